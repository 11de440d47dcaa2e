//! Accounts: provider link, PKI epoch and document age, message counts, IMAP
//! sessions logged in, last error.

use mailproxy_proto::{ConnState, StoreState};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

use super::{command_note, fmt, highlight, pane_block, placeholder, tint};
use crate::app::{Pane, State};

/// Inner width from which the last error has its own column.
const ERROR_COLUMN: u16 = 100;

/// Widths of the columns from Link to Inbox.
const COLUMNS: [u16; 8] = [10, 5, 6, 6, 6, 5, 7, 5];

/// Width of the IMAP sessions column.
const IMAP_WIDTH: u16 = 4;

/// What the account's error column shows: a failing store first (it stops
/// mail in both directions), else the last engine error.
fn error_of(row: &crate::app::AccountRow) -> Option<String> {
    let s = row.status.as_ref()?;
    if s.store != StoreState::Ok {
        let e = s.store_error.as_deref().unwrap_or("unknown error");
        return Some(format!("store {}: {e}", s.store.as_str()));
    }
    s.last_error.clone()
}

/// Renders the Accounts pane.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let mut block = pane_block(
        state,
        Pane::Accounts,
        command_note(state, "STATUS"),
        area.width,
    );
    // The error column needs room; narrower, the selected account's (or
    // else the first) error goes in the bottom border.
    let error_column = area.width.saturating_sub(2) >= ERROR_COLUMN;
    if !error_column {
        let selected = state
            .selection(Pane::Accounts)
            .and_then(|i| state.accounts.get(i));
        let with_error = selected
            .filter(|a| error_of(a).is_some())
            .or_else(|| state.accounts.iter().find(|a| error_of(a).is_some()));
        if let Some(row) = with_error {
            let text = format!(" {}: {} ", row.account, error_of(row).unwrap_or_default());
            block = block.title_bottom(Span::styled(
                fmt::cut(&text, area.width.saturating_sub(4) as usize),
                tint(state, Style::new().fg(Color::Red)),
            ));
        }
    }
    if state.accounts.is_empty() {
        frame.render_widget(block, area);
        placeholder(frame, area, state, "STATUS", "no accounts");
        return;
    }
    let account_width = state
        .accounts
        .iter()
        .map(|a| a.account.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(7, 24) as u16;
    // The IMAP column goes when it would squeeze the others (each column
    // has a space before it).
    let needed: u16 = COLUMNS.iter().chain([&IMAP_WIDTH]).map(|c| c + 1).sum();
    let imap_column = area.width.saturating_sub(2) >= account_width + needed;
    let elapsed = |seen_ms: u64| state.now_ms.saturating_sub(seen_ms) / 1000;
    let rows = state.accounts.iter().map(|row| {
        let account = Cell::from(row.account.clone());
        let Some(s) = &row.status else {
            return Row::new(vec![
                account,
                Cell::from(Span::styled(
                    "unknown",
                    tint(state, Style::new().fg(Color::DarkGray)),
                )),
            ]);
        };
        let (word, color) = match s.connection {
            ConnState::Up => ("up", Color::Green),
            ConnState::Connecting => ("connecting", Color::Yellow),
            ConnState::Down => ("down", Color::Red),
        };
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let mut cells = vec![
            account,
            Cell::from(Span::styled(
                word,
                tint(state, Style::new().fg(color).add_modifier(Modifier::BOLD)),
            )),
            Cell::from(opt(s.epoch)),
            Cell::from(s.document_age.map_or("-".to_owned(), |a| {
                fmt::duration(a.saturating_add(elapsed(row.seen_ms)))
            })),
            Cell::from(s.queued.to_string()),
            Cell::from(s.in_flight.to_string()),
            Cell::from(s.acknowledged.to_string()),
            Cell::from(s.bounced.to_string()),
            Cell::from(s.inbox.to_string()),
        ];
        if imap_column {
            cells.push(Cell::from(s.imap_sessions.to_string()));
        }
        cells.push(Cell::from(Span::styled(
            error_of(row).unwrap_or_default(),
            tint(state, Style::new().fg(Color::Red)),
        )));
        Row::new(cells)
    });
    let mut widths: Vec<Constraint> = std::iter::once(account_width)
        .chain(COLUMNS)
        .map(Constraint::Length)
        .collect();
    let mut titles = vec![
        "Account", "Link", "Epoch", "Doc", "Queued", "Flying", "Acked", "Bounced", "Inbox",
    ];
    if imap_column {
        widths.push(Constraint::Length(IMAP_WIDTH));
        titles.push("IMAP");
    }
    if error_column {
        widths.push(Constraint::Fill(1));
        titles.push("Last error");
    }
    let header = Row::new(titles).style(Style::new().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .style(tint(state, Style::new()))
        .row_highlight_style(highlight(state, Pane::Accounts));
    let mut table_state = TableState::new().with_selected(state.selection(Pane::Accounts));
    frame.render_stateful_widget(table, area, &mut table_state);
}
