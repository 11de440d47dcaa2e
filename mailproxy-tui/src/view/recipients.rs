//! Recipients: address and key (short form).

use mailproxy_proto::encode_key;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Row, Table, TableState};
use ratatui::Frame;

use super::{command_note, fmt, highlight, pane_block, placeholder, tint};
use crate::app::{Pane, State};

/// Characters of the key shown.
const KEY_CHARS: usize = 12;

/// Renders the Recipients pane.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let block = pane_block(
        state,
        Pane::Recipients,
        command_note(state, "LIST_RECIPIENTS"),
        area.width,
    );
    if state.recipients.is_empty() {
        frame.render_widget(block, area);
        placeholder(
            frame,
            area,
            state,
            "LIST_RECIPIENTS",
            "no recipients -- press a to add one",
        );
        return;
    }
    let rows = state.recipients.iter().map(|(address, key)| {
        Row::new([address.clone(), fmt::short_key(&encode_key(key), KEY_CHARS)])
    });
    let header =
        Row::new(["Address", "Key"]).style(Style::new().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(
        rows,
        [Constraint::Fill(1), Constraint::Length(KEY_CHARS as u16)],
    )
    .header(header)
    .block(block)
    .style(tint(state, Style::new()))
    .row_highlight_style(highlight(state, Pane::Recipients));
    let mut table_state = TableState::new().with_selected(state.selection(Pane::Recipients));
    frame.render_stateful_widget(table, area, &mut table_state);
}
