//! The log: daemon log lines and events, filtered by level, following the
//! tail unless scrolled up.

use mailproxy_proto::Level;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{command_note, fmt, pane_block, placeholder, tint};
use crate::app::{LogEntry, Pane, State};

/// Renders the Log pane.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let mut note = command_note(state, "EVENTS");
    if state.log_offset > 0 {
        let scrolled = format!("scrolled up {} (G follows)", state.log_offset);
        note = Some(match note {
            Some(n) => format!("{n} -- {scrolled}"),
            None => scrolled,
        });
    }
    let block = pane_block(state, Pane::Log, note, area.width).title_bottom(
        Line::from(Span::styled(
            format!(" level {} (l) ", state.level),
            Style::new().fg(Color::DarkGray),
        ))
        .right_aligned(),
    );
    let visible: Vec<&LogEntry> = state.visible_log().collect();
    if visible.is_empty() {
        frame.render_widget(block, area);
        placeholder(frame, area, state, "EVENTS", "no log lines yet");
        return;
    }
    let height = area.height.saturating_sub(2) as usize;
    let end = visible.len() - state.log_offset.min(visible.len() - 1);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = visible[start..end].iter().map(|e| line(state, e)).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn line<'a>(state: &State, entry: &LogEntry) -> Line<'a> {
    let color = match entry.level {
        Level::Error => Color::Red,
        Level::Warn => Color::Yellow,
        Level::Info => Color::Green,
        Level::Debug => Color::Blue,
        Level::Trace | Level::Off => Color::DarkGray,
    };
    // Targets like mailproxyd::engine::arq: keep the last part.
    let source = entry.source.rsplit("::").next().unwrap_or(&entry.source);
    Line::from(vec![
        Span::styled(
            format!("{} ", fmt::clock(entry.time_ms / 1000)),
            tint(state, Style::new().fg(Color::DarkGray)),
        ),
        Span::styled(
            format!("{:<5} ", entry.level.as_str()),
            tint(state, Style::new().fg(color)),
        ),
        Span::styled(
            format!("{source}: "),
            tint(state, Style::new().fg(Color::Cyan)),
        ),
        Span::styled(entry.text.clone(), tint(state, Style::new())),
    ])
}
