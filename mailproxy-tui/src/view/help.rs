//! The help overlay (`?`).

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, dialog_block};

const KEYS: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous pane"),
    ("1-5", "Accounts, Recipients, Queue, Received, Log"),
    ("↑↓ j k", "move the selection / scroll the log"),
    ("PgUp PgDn g G", "page, first, last (G: follow the log)"),
    ("a", "add a recipient"),
    ("e / d", "edit / remove the selected recipient"),
    ("c", "cancel the selected outgoing message"),
    ("l", "cycle the log level"),
    ("r", "refresh now (or reconnect now)"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit"),
];

/// Renders the help overlay.
pub fn render(frame: &mut Frame, area: Rect) {
    let popup = centered(area, 64, KEYS.len() as u16 + 4);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!(" {key:<16}"), Style::new().fg(Color::Cyan)),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " any key closes this help",
        Style::new().fg(Color::DarkGray),
    )));
    let block = dialog_block(" Help ", Style::new());
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}
