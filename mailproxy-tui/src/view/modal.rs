//! Dialogs: the recipient editor (live key validation) and yes/no questions.

use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, dialog_block, fmt};
use crate::app::{Confirm, Field, RecipientEditor};

const LABEL: usize = 10;

/// Renders the recipient editor.
pub fn render_editor(frame: &mut Frame, area: Rect, editor: &RecipientEditor) {
    let popup = centered(area, 80, 7);
    let inner_width = popup.width.saturating_sub(2) as usize;
    // Room for the text after the label and a cursor cell.
    let room = inner_width.saturating_sub(LABEL + 2);
    let field_line = |label: &str, text: &str, field: Field| {
        let focused = editor.field == field;
        let style = if focused {
            Style::new().fg(Color::White).bg(Color::DarkGray)
        } else {
            Style::new()
        };
        Line::from(vec![
            Span::styled(
                format!(" {label:<w$}", w = LABEL - 1),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!("{:<room$}", fmt::tail(text, room)), style),
        ])
    };
    // The live key check; after a refused save, the refusal in red instead.
    let message = match &editor.error {
        Some(error) => Span::styled(
            error.clone(),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        None => Span::styled(
            editor.key_message(),
            Style::new().fg(if editor.key_check().is_ok() {
                Color::Green
            } else {
                Color::Yellow
            }),
        ),
    };
    let lines = vec![
        field_line("Address", &editor.address, Field::Address),
        field_line("Key", &editor.key, Field::Key),
        Line::from(vec![Span::raw(format!("{:LABEL$}", "")), message]),
        Line::from(""),
        Line::from(Span::styled(
            if editor.editing {
                " Enter save   Ctrl-U clear   Esc cancel"
            } else {
                " Enter save   Tab switch field   Ctrl-U clear   Esc cancel"
            },
            Style::new().fg(Color::DarkGray),
        )),
    ];
    let title = if editor.editing {
        " Edit recipient "
    } else {
        " Add recipient "
    };
    let block = dialog_block(title, Style::new().fg(Color::Cyan));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block), popup);

    // The terminal cursor at the end of the focused field.
    let (text, row) = match editor.field {
        Field::Address => (&editor.address, 0),
        Field::Key => (&editor.key, 1),
    };
    let col = LABEL + text.chars().count().min(room);
    let x = popup.x + 1 + col as u16;
    let y = popup.y + 1 + row;
    if x < popup.right().saturating_sub(1) && y < popup.bottom().saturating_sub(1) {
        frame.set_cursor_position(Position::new(x, y));
    }
}

/// Renders a yes/no question.
pub fn render_confirm(frame: &mut Frame, area: Rect, confirm: &Confirm) {
    let (question, detail) = match confirm {
        Confirm::RemoveRecipient { address } => (
            format!("Remove recipient {address}?"),
            "Its key file is deleted.".to_owned(),
        ),
        Confirm::CancelMessage {
            account,
            id,
            recipient,
        } => (
            format!("Cancel message #{id} from {account} to {recipient}?"),
            "It will not be sent.".to_owned(),
        ),
    };
    let popup = centered(area, 64, 6);
    let lines = vec![
        Line::from(format!(" {question}")),
        Line::from(format!(" {detail}")),
        Line::from(""),
        Line::from(vec![
            Span::styled(" y", Style::new().fg(Color::Cyan)),
            Span::raw(" yes   "),
            Span::styled("n", Style::new().fg(Color::Cyan)),
            Span::raw(" no"),
        ]),
    ];
    let block = dialog_block(" Confirm ", Style::new().fg(Color::Yellow));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}
