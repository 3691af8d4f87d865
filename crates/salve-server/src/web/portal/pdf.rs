//! The patient's own messages as a PDF (the right of access): the practice's messages and the
//! patient's, oldest first, with attachment names. Helvetica (a standard PDF font, nothing
//! embedded) in WinAnsi encoding, which covers English and Spanish (á é í ó ú ñ ü ¿ ¡).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::conversation::{author, file_size, local_time};
use super::verified;
use crate::AppState;
use crate::api::messages::fmt_time;
use crate::api::portal_messages;
use crate::context::ClientInfo;
use crate::error::ApiError;
use crate::web::Page;

/// US Letter, in points.
const PAGE_W: f32 = 612.0;
const PAGE_H: f32 = 792.0;
const MARGIN: f32 = 54.0;
const BODY_SIZE: f32 = 10.5;
const LEADING: f32 = 14.0;

/// A character in Windows-1252 (the PDF WinAnsiEncoding for the standard fonts); `?` for
/// anything the standard fonts cannot show.
fn win_ansi(c: char) -> u8 {
    match c as u32 {
        0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
        _ => match c {
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '™' => 0x99,
            '\t' => b' ',
            _ => b'?',
        },
    }
}

fn encode(text: &str) -> Vec<u8> {
    text.chars().map(win_ansi).collect()
}

/// Helvetica's advance widths (per 1000 em) for the characters messages mostly use; accented
/// letters are as wide as their base letter. Others count as wide, so lines never overflow.
fn width(c: char) -> f32 {
    let base = match c {
        'á' | 'à' | 'â' | 'ä' | 'ã' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'ö' | 'õ' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ñ' => 'n',
        'Á' | 'À' | 'Â' | 'Ä' | 'Ã' => 'A',
        'É' | 'È' | 'Ê' | 'Ë' => 'E',
        'Í' | 'Ì' | 'Î' | 'Ï' => 'I',
        'Ó' | 'Ò' | 'Ô' | 'Ö' | 'Õ' => 'O',
        'Ú' | 'Ù' | 'Û' | 'Ü' => 'U',
        'Ñ' => 'N',
        other => other,
    };
    let w = match base {
        ' ' | 'f' | 't' | 'I' | '.' | ',' | ':' | ';' | '!' | '/' | '[' | ']' => 278,
        'i' | 'j' | 'l' | '\'' | '|' => 222,
        'r' | '-' | '(' | ')' | '`' | '¡' => 333,
        'c' | 'k' | 's' | 'v' | 'x' | 'y' | 'z' | 'J' => 500,
        'm' | 'M' => 833,
        'w' | 'C' | 'D' | 'H' | 'N' | 'R' | 'U' => 722,
        'A' | 'B' | 'E' | 'K' | 'P' | 'S' | 'V' | 'X' | 'Y' | '&' => 667,
        'F' | 'T' | 'Z' => 611,
        'G' | 'O' | 'Q' => 778,
        'W' => 944,
        'L' | '?' | '¿' | '$' | '#' | '_' => 556,
        '"' => 355,
        '%' => 889,
        '@' => 1015,
        c if c.is_ascii_lowercase() || c.is_ascii_digit() => 556,
        _ => 1000,
    };
    w as f32 / 1000.0
}

/// Splits text into lines no wider than `max` points at `size`.
fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut line_w = 0.0;
        for word in paragraph.split(' ') {
            let word_w: f32 = word.chars().map(|c| width(c) * size).sum();
            let space = if line.is_empty() {
                0.0
            } else {
                width(' ') * size
            };
            if line_w + space + word_w <= max {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
                line_w += space + word_w;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                line_w = 0.0;
            }
            // A word longer than a line is cut.
            for c in word.chars() {
                let w = width(c) * size;
                if line_w + w > max && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line_w = 0.0;
                }
                line.push(c);
                line_w += w;
            }
        }
        lines.push(line);
    }
    lines
}

pub(crate) enum Style {
    Title,
    Heading,
    Body,
    Small,
}

/// Lays lines out on as many pages as they need.
pub(crate) struct Writer {
    pages: Vec<Vec<u8>>,
    content: Content,
    y: f32,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer {
            pages: Vec::new(),
            content: Content::new(),
            y: PAGE_H - MARGIN,
        }
    }

    pub(crate) fn line(&mut self, text: &str, style: &Style) {
        let (font, size, leading): (&[u8], f32, f32) = match style {
            Style::Title => (b"F2", 16.0, 22.0),
            Style::Heading => (b"F2", BODY_SIZE, LEADING),
            Style::Body => (b"F1", BODY_SIZE, LEADING),
            Style::Small => (b"F1", 9.0, 12.0),
        };
        for line in wrap(text, size, PAGE_W - 2.0 * MARGIN) {
            if self.y - leading < MARGIN {
                self.break_page();
            }
            self.y -= leading;
            self.content
                .begin_text()
                .set_font(Name(font), size)
                .next_line(MARGIN, self.y)
                .show(Str(&encode(&line)))
                .end_text();
        }
    }

    pub(crate) fn gap(&mut self, points: f32) {
        self.y -= points;
    }

    fn break_page(&mut self) {
        let done = std::mem::replace(&mut self.content, Content::new());
        self.pages.push(done.finish());
        self.y = PAGE_H - MARGIN;
    }

    pub(crate) fn finish(mut self, title: &str) -> Vec<u8> {
        self.break_page();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let regular = Ref::new(3);
        let bold = Ref::new(4);
        let info = Ref::new(5);
        let first = 6;
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        let page_ids: Vec<Ref> = (0..self.pages.len())
            .map(|i| Ref::new(first + 2 * i as i32))
            .collect();
        pdf.pages(tree)
            .kids(page_ids.iter().copied())
            .count(page_ids.len() as i32);
        pdf.type1_font(regular)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.document_info(info).title(TextStr(title));
        for (i, stream) in self.pages.iter().enumerate() {
            let page_id = page_ids[i];
            let content_id = Ref::new(page_id.get() + 1);
            let mut page = pdf.page(page_id);
            page.parent(tree)
                .media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
                .contents(content_id);
            let mut resources = page.resources();
            let mut fonts = resources.fonts();
            fonts.pair(Name(b"F1"), regular);
            fonts.pair(Name(b"F2"), bold);
            fonts.finish();
            resources.finish();
            page.finish();
            pdf.stream(content_id, stream);
        }
        pdf.finish()
    }
}

pub async fn download(
    State(state): State<AppState>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, ApiError> {
    let v = verified(&state, &client, &headers, page, "/portal").await?;
    let es = v.frame.es;
    let axum::Json(list) = portal_messages::conversations(
        State(state.clone()),
        Extension(client.clone()),
        headers.clone(),
    )
    .await?;
    let practice = state.store.practice(v.session.practice_id).await?;
    let now = fmt_time(state.clock.now());
    let mut messages: Vec<&crate::api::messages::MessageOut> = list
        .conversations
        .iter()
        .flat_map(|c| c.messages.iter())
        .collect();
    messages.sort_by(|a, b| a.created_at.cmp(&b.created_at));

    let title = if es {
        format!("Mensajes con {}", practice.name)
    } else {
        format!("Messages with {}", practice.name)
    };
    let mut w = Writer::new();
    w.line(&title, &Style::Title);
    let prepared = if es {
        format!(
            "Para {}. Descargado el {}.",
            v.me.given_name,
            local_time(&now, &practice.time_zone, es)
        )
    } else {
        format!(
            "For {}. Downloaded {}.",
            v.me.given_name,
            local_time(&now, &practice.time_zone, es)
        )
    };
    w.line(&prepared, &Style::Small);
    w.gap(10.0);
    if messages.is_empty() {
        w.line(
            if es {
                "Todavía no hay mensajes."
            } else {
                "There are no messages yet."
            },
            &Style::Body,
        );
    }
    for m in messages {
        let who = author(&m.direction, &m.author_kind, &practice.name, es);
        w.line(
            &format!(
                "{} — {}",
                local_time(&m.created_at, &practice.time_zone, es),
                who
            ),
            &Style::Heading,
        );
        if let Some(text) = &m.text {
            w.line(text, &Style::Body);
        }
        for a in &m.attachments {
            let label = if es { "Archivo adjunto" } else { "Attachment" };
            w.line(
                &format!("{label}: {} ({})", a.file_name, file_size(a.size)),
                &Style::Small,
            );
        }
        w.gap(8.0);
    }
    let bytes = w.finish(&title);
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"messages.pdf\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanish_letters_are_in_win_ansi() {
        assert_eq!(
            encode("¿Cuándo? ¡Sí, mañana! Ñandú"),
            b"\xbfCu\xe1ndo? \xa1S\xed, ma\xf1ana! \xd1and\xfa".to_vec()
        );
        assert_eq!(encode("“ok” — 5 €"), b"\x93ok\x94 \x97 5 \x80".to_vec());
        assert_eq!(encode("日本"), b"??".to_vec());
    }

    #[test]
    fn long_text_wraps_within_the_page() {
        let text = "palabra ".repeat(200);
        let lines = wrap(&text, BODY_SIZE, 200.0);
        assert!(lines.len() > 10);
        for l in &lines {
            let w: f32 = l.chars().map(|c| width(c) * BODY_SIZE).sum();
            assert!(w <= 200.0, "{l}");
        }
        let long = wrap(&"x".repeat(500), BODY_SIZE, 100.0);
        assert!(long.len() > 5);
    }

    #[test]
    fn a_document_is_a_pdf() {
        let mut w = Writer::new();
        for i in 0..200 {
            w.line(&format!("Línea {i}"), &Style::Body);
        }
        let bytes = w.finish("Mensajes");
        assert!(bytes.starts_with(b"%PDF-"));
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|x| x == needle);
        // 48 lines fit on a page: 200 lines take 5 pages.
        assert!(has(b"/Count 5"));
        assert!(has(b"/BaseFont /Helvetica"));
    }
}
