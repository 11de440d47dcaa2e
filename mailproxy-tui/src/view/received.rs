//! Received mail, newest first: sender key (short), size, arrival time.
//! Never contents.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

use super::{command_note, fmt, highlight, pane_block, placeholder, tint};
use crate::app::{Pane, State};

/// Characters of the sender key shown.
const KEY_CHARS: usize = 12;

/// Inner width from which the account column is shown.
const WIDE: u16 = 60;

/// Renders the Received pane.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let block = pane_block(
        state,
        Pane::Received,
        command_note(state, "INBOX"),
        area.width,
    );
    if state.inbox.is_empty() {
        frame.render_widget(block, area);
        placeholder(frame, area, state, "INBOX", "no mail received");
        return;
    }
    let wide = area.width.saturating_sub(2) >= WIDE;
    let now_secs = state.now_ms / 1000;
    // Newest first, so that new mail shows at the top of the pane.
    let mut items: Vec<_> = state.inbox.iter().collect();
    items.sort_by_key(|m| std::cmp::Reverse((m.arrived, m.id)));
    let rows = items.into_iter().map(|item| {
        let mut cells = Vec::with_capacity(5);
        if wide {
            cells.push(item.account.clone());
        }
        cells.push(item.id.to_string());
        cells.push(match &item.sender {
            Some(key) => fmt::short_key(key, KEY_CHARS),
            None => "(report)".to_owned(),
        });
        cells.push(fmt::size(item.size));
        cells.push(fmt::when(item.arrived, now_secs));
        Row::new(cells)
    });
    let mut header = Vec::with_capacity(5);
    let mut widths = Vec::with_capacity(5);
    if wide {
        header.push("Account");
        widths.push(Constraint::Fill(1));
    }
    header.extend(["#", "From (key)", "Size", "Arrived"]);
    widths.extend([
        Constraint::Length(4),
        Constraint::Length(KEY_CHARS as u16),
        Constraint::Length(9),
        Constraint::Length(10),
    ]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::UNDERLINED)))
        .block(block)
        .style(tint(state, Style::new()))
        .row_highlight_style(highlight(state, Pane::Received));
    let mut table_state = TableState::new().with_selected(state.selection(Pane::Received));
    frame.render_stateful_widget(table, area, &mut table_state);
}
