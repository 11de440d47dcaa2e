//! The bottom line: a flash message, the disconnection reason, or key hints.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{Connection, Pane, State};

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
    } else if let Connection::Disconnected { error, .. } = &state.connection {
        Line::from(Span::styled(
            format!(" {error}  (r retry now, q quit)"),
            Style::new().fg(Color::Red),
        ))
    } else {
        hints(state)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hints(state: &State) -> Line<'static> {
    let pane_keys: &[(&str, &str)] = match (&state.modal, state.focus) {
        (Some(_), _) => &[],
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
    let key = Style::new().fg(Color::Cyan);
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in pane_keys.iter().chain(common) {
        spans.push(Span::styled(*k, key));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans)
}
