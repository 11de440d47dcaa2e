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
                // A daemon that says it speaks our protocol yet refuses a
                // command is not "older": say what is true.
                let note = match protocol_of(version) {
                    Some(p) if p >= mailproxy_proto::PROTOCOL_VERSION => {
                        "   (some commands refused)"
                    }
                    _ => "   (older daemon)",
                };
                spans.push(Span::styled(note, Style::new().fg(Color::Yellow)));
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

/// The protocol revision in a `VERSION` reply such as
/// `mailproxyd 0.1.0 protocol 2`.
fn protocol_of(version: &str) -> Option<u32> {
    let rest = &version[version.find("protocol ")? + "protocol ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::protocol_of;

    #[test]
    fn protocol_revision_is_read_from_the_version_line() {
        assert_eq!(protocol_of("mailproxyd 0.1.0 protocol 2"), Some(2));
        assert_eq!(protocol_of("mailproxyd 0.1.0 protocol 12 extra"), Some(12));
        assert_eq!(protocol_of("mailproxy 0.0.6"), None);
        assert_eq!(protocol_of("protocol x"), None);
    }
}
