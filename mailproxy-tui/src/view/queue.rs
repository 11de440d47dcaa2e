//! The send queue: recipient, size, progress bar, age, next retransmission,
//! bounce deadline, state.

use mailproxy_proto::QueueState;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

use super::{command_note, fmt, highlight, pane_block, placeholder, tint};
use crate::app::{Pane, State};

/// Cells of the progress bar.
const BAR: usize = 8;

/// Inner width from which the account column is shown.
const WIDE: u16 = 110;

/// Inner width below which only id, recipient, progress and state are shown.
const NARROW: u16 = 66;

/// Renders the Queue pane.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let block = pane_block(state, Pane::Queue, command_note(state, "QUEUE"), area.width);
    if state.queue.is_empty() {
        frame.render_widget(block, area);
        placeholder(frame, area, state, "QUEUE", "nothing waiting to go out");
        return;
    }
    let now = state.now_ms;
    let inner = area.width.saturating_sub(2);
    let (wide, narrow) = (inner >= WIDE, inner < NARROW);
    let rows = state.queue.iter().map(|row| {
        let item = &row.item;
        let (word, color) = match item.state {
            QueueState::WaitingKey => ("no key", Color::Yellow),
            QueueState::Queued => ("queued", Color::Reset),
            QueueState::Sending => ("sending", Color::Cyan),
        };
        let mut cells = Vec::with_capacity(9);
        if wide {
            cells.push(Cell::from(item.account.clone()));
        }
        cells.extend([
            Cell::from(item.id.to_string()),
            Cell::from(item.recipient.clone()),
        ]);
        if !narrow {
            cells.push(Cell::from(fmt::size(item.size)));
        }
        cells.push(Cell::from(Span::styled(
            fmt::progress(item.blocks_acked, item.blocks_total, BAR),
            tint(state, Style::new().fg(Color::Green)),
        )));
        if !narrow {
            let resend = row.retransmit_in(now).map_or("-".to_owned(), fmt::duration);
            let bounce = row.bounce_in(now).map_or("-".to_owned(), fmt::duration);
            cells.extend([
                Cell::from(fmt::duration(row.age(now))),
                Cell::from(resend),
                Cell::from(bounce),
            ]);
        }
        cells.push(Cell::from(Span::styled(
            word,
            tint(state, Style::new().fg(color)),
        )));
        Row::new(cells)
    });
    let mut header = Vec::with_capacity(9);
    let mut widths = Vec::with_capacity(9);
    if wide {
        header.push("Account");
        widths.push(Constraint::Length(20));
    }
    header.extend(["#", "To"]);
    widths.extend([Constraint::Length(4), Constraint::Fill(1)]);
    if !narrow {
        header.push("Size");
        widths.push(Constraint::Length(8));
    }
    header.push("Progress");
    widths.push(Constraint::Length(BAR as u16 + 10));
    if !narrow {
        header.extend(["Age", "Resend", "Bounce"]);
        widths.extend([
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
        ]);
    }
    header.push("State");
    widths.push(Constraint::Length(7));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)))
        .block(block)
        .style(tint(state, Style::new()))
        .row_highlight_style(highlight(state, Pane::Queue));
    let mut table_state = TableState::new().with_selected(state.selection(Pane::Queue));
    frame.render_stateful_widget(table, area, &mut table_state);
}
