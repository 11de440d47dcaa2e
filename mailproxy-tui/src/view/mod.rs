//! Pure rendering: `draw(frame, &State)`. One module per pane, plus the
//! header, the status bar, the help overlay and the dialogs.

mod accounts;
pub mod fmt;
mod header;
mod help;
mod log;
mod modal;
mod queue;
mod received;
mod recipients;
mod status_bar;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use ratatui::Frame;

use crate::app::{Modal, Pane, State};

/// Below this size the dashboard shows only the focused pane.
const FULL_MIN: (u16, u16) = (60, 18);

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, state: &State) {
    let area = frame.area();
    if area.width < 2 || area.height < 3 {
        return;
    }
    let [header_area, _, bar_area] = split_screen(area);
    header::render(frame, header_area, state);
    status_bar::render(frame, bar_area, state);
    for (pane, rect) in pane_areas(area, state) {
        render_pane(frame, rect, state, pane);
    }

    match &state.modal {
        None => {}
        Some(Modal::Help) => help::render(frame, area),
        Some(Modal::Editor(editor)) => modal::render_editor(frame, area, editor),
        Some(Modal::Confirm(confirm)) => modal::render_confirm(frame, area, confirm),
    }
}

/// Header line, body, status bar.
fn split_screen(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// Where each visible pane goes on a screen of `area` (only the focused
/// pane below 60x18).
pub fn pane_areas(area: Rect, state: &State) -> Vec<(Pane, Rect)> {
    if area.width < 2 || area.height < 3 {
        return Vec::new();
    }
    let [_, body, _] = split_screen(area);
    if area.width < FULL_MIN.0 || area.height < FULL_MIN.1 {
        return vec![(state.focus, body)];
    }
    let accounts_height = (state.accounts.len().max(1) as u16 + 3).min(7);
    // Tall terminals give the log the extra room.
    let log_share = if body.height >= 34 { 2 } else { 1 };
    let [accounts, queue, middle, log] = Layout::vertical([
        Constraint::Length(accounts_height),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(log_share),
    ])
    .areas(body);
    let [recipients, received] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    vec![
        (Pane::Accounts, accounts),
        (Pane::Queue, queue),
        (Pane::Recipients, recipients),
        (Pane::Received, received),
        (Pane::Log, log),
    ]
}

/// The pane at a screen position.
pub fn pane_at(area: Rect, state: &State, column: u16, row: u16) -> Option<Pane> {
    pane_areas(area, state)
        .into_iter()
        .find(|(_, rect)| rect.contains(ratatui::layout::Position::new(column, row)))
        .map(|(pane, _)| pane)
}

fn render_pane(frame: &mut Frame, area: Rect, state: &State, pane: Pane) {
    if area.width < 3 || area.height < 3 {
        return;
    }
    match pane {
        Pane::Accounts => accounts::render(frame, area, state),
        Pane::Recipients => recipients::render(frame, area, state),
        Pane::Queue => queue::render(frame, area, state),
        Pane::Received => received::render(frame, area, state),
        Pane::Log => log::render(frame, area, state),
    }
}

/// `style`, or grey when the data is not live.
fn tint(state: &State, style: Style) -> Style {
    if state.connection.is_connected() {
        style
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

/// The bordered block of a pane: `[n] Title`, highlighted when focused,
/// with `note` (e.g. an unsupported command) after the title; a note too
/// long for `width` is cut to its first words that fit.
fn pane_block<'a>(state: &State, pane: Pane, note: Option<String>, width: u16) -> Block<'a> {
    let focused = state.focus == pane;
    let border = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let mut title = vec![Span::styled(
        format!(" {} {} ", pane.index() + 1, pane.title()),
        if focused {
            border
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        },
    )];
    let room = (width as usize).saturating_sub(pane.title().len() + 10);
    if let Some(note) = note.map(|n| fit_words(&n, room)).filter(|n| !n.is_empty()) {
        title.push(Span::styled(
            format!("-- {note} "),
            Style::new().fg(Color::Yellow),
        ));
    }
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(tint(state, border))
        .title(Line::from(title))
}

/// The longest prefix of `text` made of whole words that fits in `width`
/// (with "..." when cut).
fn fit_words(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    for word in text.split(' ') {
        if out.chars().count() + word.chars().count() + 4 > width {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.is_empty() {
        out
    } else {
        out + "..."
    }
}

/// The title note for a pane whose command the daemon does not know or failed.
fn command_note(state: &State, command: &'static str) -> Option<String> {
    if state.unsupported.contains(command) {
        return Some(format!("daemon does not support {command} (old version?)"));
    }
    state
        .failures
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(c, e)| format!("{c} failed: {e}"))
}

/// A grey placeholder inside an empty pane: why it is empty if the
/// daemon does not support or refused `command`, else `text`.
fn placeholder(frame: &mut Frame, area: Rect, state: &State, command: &'static str, text: &str) {
    let text = command_note(state, command).unwrap_or_else(|| text.to_owned());
    let inner = Rect {
        x: area.x + 1,
        y: area.y + 1,
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    };
    if inner.height == 0 {
        return;
    }
    frame.render_widget(
        Paragraph::new(Span::styled(text, Style::new().fg(Color::DarkGray)))
            .wrap(ratatui::widgets::Wrap { trim: true }),
        inner,
    );
}

/// The style of a selected row.
fn highlight(state: &State, pane: Pane) -> Style {
    if state.focus == pane {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

/// The frame of a dialog drawn over the panes: a double border in `border`
/// with a bold title.
fn dialog_block(title: &str, border: Style) -> Block<'_> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(border)
        .title(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ))
}

/// A centred rectangle of at most `width` x `height` inside `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
