//! The bottom line: a flash message, the disconnection reason, or key hints.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{Connection, Modal, Pane, State};

/// Renders the status bar.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let line = if let Some(flash) = &state.flash {
        let color = if flash.error {
            Color::Red
        } else {
            Color::Green
        };
        Line::from(Span::styled(
            format!(" {}", flash.text),
            Style::new().fg(color),
        ))
    } else if let (Connection::Disconnected { error, .. }, None) = (&state.connection, &state.modal)
    {
        Line::from(vec![
            Span::styled(" r", Style::new().fg(Color::Cyan)),
            Span::raw(" retry now  "),
            Span::styled("q", Style::new().fg(Color::Cyan)),
            Span::raw(" quit  "),
            Span::styled(error.clone(), Style::new().fg(Color::Red)),
        ])
    } else {
        hints(state)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(state: &State) -> Line<'static> {
    let pane_keys: &[(&str, &str)] = match (&state.modal, state.focus) {
        (Some(Modal::Help), _) => return keys(&[("any key", "closes the help")]),
        (Some(Modal::Editor(_)), _) => return keys(&[("Enter", "save"), ("Esc", "cancel")]),
        (Some(Modal::Confirm(_)), _) => return keys(&[("y", "yes"), ("n/Esc", "no")]),
        (None, Pane::Recipients) => &[("a", "add"), ("e", "edit"), ("d", "remove")],
        (None, Pane::Queue) => &[("c", "cancel")],
        (None, Pane::Log) => &[("l", "level"), ("G", "follow")],
        (None, _) => &[("a", "add recipient")],
    };
    let common: &[(&str, &str)] = &[
        ("Tab", "pane"),
        ("↑↓", "move"),
        ("r", "refresh"),
        ("?", "help"),
        ("q", "quit"),
    ];
    keys(&[pane_keys, common].concat())
}

/// A line of `key what` hints.
fn keys(list: &[(&str, &str)]) -> Line<'static> {
    let key = Style::new().fg(Color::Cyan);
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in list {
        spans.push(Span::styled(k.to_string(), key));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans)
}
