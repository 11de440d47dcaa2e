//! The top line: the link to the daemon (a red banner when it is gone).

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::app::{Connection, State};

/// Renders the header line.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let title = Span::styled(
        " mailproxy ",
        Style::new()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    );
    let line = match &state.connection {
        Connection::Connecting => Line::from(vec![
            title,
            Span::styled(
                " connecting to the daemon...",
                Style::new().fg(Color::Yellow),
            ),
        ]),
        Connection::Connected { version } => {
            let mut spans = vec![
                title,
                Span::styled(" ● ", Style::new().fg(Color::Green)),
                Span::raw(version.clone()),
                Span::styled(
                    format!("   log {}", state.level),
                    Style::new().fg(Color::DarkGray),
                ),
            ];
            if !state.unsupported.is_empty() {
                spans.push(Span::styled(
                    "   (older daemon)",
                    Style::new().fg(Color::Yellow),
                ));
            }
            Line::from(spans)
        }
        Connection::Disconnected { retry_at_ms, .. } => {
            let secs = retry_at_ms.saturating_sub(state.now_ms).div_ceil(1000);
            let text = if secs == 0 {
                " daemon not running / connection lost -- retrying now".to_owned()
            } else {
                format!(" daemon not running / connection lost -- retrying in {secs}s")
            };
            Line::from(vec![title, Span::raw(text)]).style(
                Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            )
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}
