//! The emergency card's printable wallet card (ISO/IEC 7810 ID-1, 85.6 x
//! 54 mm): who it is for, what scanning it shows, and the QR code (error
//! correction M). One layout ([`WalletCard`]), drawn as SVG or as PDF.
//!
//! Coordinates are in tenths of a millimetre from the card's top left
//! corner (856 x 540), the SVG's view box; the PDF maps them to points.

use std::path::Path;

use anyhow::{Context, Result};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use satchel_core::profile::share_links::{viewer_url, ShareLinkRecord};
use satchel_core::share_link::ShlPayload;

use crate::output;

const WIDTH: f32 = 856.0;
const HEIGHT: f32 = 540.0;
/// Card red (header band and border), as 0-255 RGB.
const RED: (u8, u8, u8) = (0xb0, 0x00, 0x20);
/// Where the QR code sits (with its 4-module quiet zone).
const QR_X: f32 = 500.0;
const QR_Y: f32 = 150.0;
const QR_SIDE: f32 = 330.0;

/// One line of text on the card.
struct Line {
    x: f32,
    /// Baseline.
    y: f32,
    size: f32,
    bold: bool,
    grey: bool,
    text: String,
}

/// What the card shows, laid out once for every format.
pub(crate) struct WalletCard {
    lines: Vec<Line>,
    /// Dark modules of the QR code, row-major, `side` x `side`.
    modules: Vec<bool>,
    side: usize,
}

impl WalletCard {
    pub(crate) fn new(card: &ShareLinkRecord, payload: &ShlPayload, owner: &str) -> Result<Self> {
        let viewer = payload.to_viewer_url(&viewer_url(&card.relay))?;
        let qr = qrcode::QrCode::with_error_correction_level(viewer.as_bytes(), qrcode::EcLevel::M)
            .context("the link is too long for a QR code")?;
        let shows = card.content.describe();
        let issued = output::format_ms(card.created_at_ms);
        let issued = issued.split('T').next().unwrap_or_default();
        let line = |y: f32, size: f32, bold: bool, text: String| Line {
            x: 36.0,
            y,
            size,
            bold,
            grey: false,
            text,
        };
        let mut lines = vec![
            line(60.0, 38.0, true, "EMERGENCY HEALTH CARD".into()),
            line(160.0, 34.0, true, owner.to_owned()),
            line(
                215.0,
                24.0,
                false,
                format!(
                    "Scan for: {}",
                    shows
                        .trim_start_matches("emergency card: ")
                        .replace(',', ", ")
                ),
            ),
            line(
                255.0,
                24.0,
                false,
                "Any phone camera; no app, no passcode.".into(),
            ),
            line(
                295.0,
                24.0,
                false,
                format!("Issued {issued}. May be incomplete."),
            ),
        ];
        lines.push(Line {
            grey: true,
            ..line(
                500.0,
                18.0,
                false,
                format!("SMART Health Link - card {}", card.short_id()),
            )
        });
        Ok(Self {
            lines,
            modules: qr
                .to_colors()
                .iter()
                .map(|c| *c == qrcode::Color::Dark)
                .collect(),
            side: qr.width(),
        })
    }

    /// Dark modules as (column, row), quiet zone included in the offset.
    fn dark(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.modules
            .iter()
            .enumerate()
            .filter(|(_, dark)| **dark)
            .map(|(i, _)| (i % self.side + 4, i / self.side + 4))
    }

    /// The card as SVG (a browser prints it at its real size).
    pub(crate) fn svg(&self) -> String {
        let escape = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let (r, g, b) = RED;
        let red = format!("#{r:02x}{g:02x}{b:02x}");
        let mut svg = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="85.6mm" height="54mm" viewBox="0 0 {WIDTH} {HEIGHT}">
<rect x="1" y="1" width="854" height="538" rx="32" fill="#fff" stroke="{red}" stroke-width="2"/>
<rect x="1" y="1" width="854" height="90" rx="32" fill="{red}"/>
<rect x="1" y="60" width="854" height="31" fill="{red}"/>
"##
        );
        for (i, l) in self.lines.iter().enumerate() {
            let fill = if i == 0 {
                "#fff"
            } else if l.grey {
                "#555"
            } else {
                "#000"
            };
            let weight = if l.bold { r#" font-weight="bold""# } else { "" };
            svg.push_str(&format!(
                r#"<text x="{}" y="{}" font-family="Helvetica, Arial, sans-serif" font-size="{}"{weight} fill="{fill}">{}</text>
"#,
                l.x,
                l.y,
                l.size,
                escape(&l.text)
            ));
        }
        let side = self.side + 8;
        let path: String = self
            .dark()
            .map(|(x, y)| format!("M{x} {y}h1v1h-1z"))
            .collect();
        svg.push_str(&format!(
            r##"<svg x="{QR_X}" y="{QR_Y}" width="{QR_SIDE}" height="{QR_SIDE}" viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="#fff"/><path d="{path}" fill="#000"/></svg>
</svg>
"##
        ));
        svg
    }

    /// The card as a one-page PDF of the card's size, with the PDF base
    /// fonts (Helvetica; WinAnsi, so a name outside Latin-1 prints with
    /// `?` for the letters it lacks: the SVG keeps every letter).
    pub(crate) fn pdf(&self) -> Vec<u8> {
        // Tenths of a millimetre to points.
        let k = 72.0 / 254.0;
        let (w, h) = (WIDTH * k, HEIGHT * k);
        let x = |v: f32| v * k;
        let y = |v: f32| h - v * k;
        let (catalog, tree, page, content_id, regular, bold) = (
            Ref::new(1),
            Ref::new(2),
            Ref::new(3),
            Ref::new(4),
            Ref::new(5),
            Ref::new(6),
        );
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree).kids([page]).count(1);
        let mut p = pdf.page(page);
        p.media_box(Rect::new(0.0, 0.0, w, h))
            .parent(tree)
            .contents(content_id);
        p.resources()
            .fonts()
            .pair(Name(b"F1"), regular)
            .pair(Name(b"F2"), bold);
        drop(p);
        pdf.type1_font(regular)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
        pdf.type1_font(bold)
            .base_font(Name(b"Helvetica-Bold"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));

        let mut c = Content::new();
        let (r, g, b) = RED;
        let rgb = |v: u8| f32::from(v) / 255.0;
        // Border and header band.
        c.set_stroke_rgb(rgb(r), rgb(g), rgb(b))
            .set_line_width(2.0 * k)
            .rect(x(1.0), y(539.0), x(854.0), x(538.0))
            .stroke();
        c.set_fill_rgb(rgb(r), rgb(g), rgb(b))
            .rect(x(1.0), y(91.0), x(854.0), x(90.0))
            .fill_nonzero();
        for (i, l) in self.lines.iter().enumerate() {
            let (fr, fg, fb) = if i == 0 {
                (1.0, 1.0, 1.0)
            } else if l.grey {
                (0.33, 0.33, 0.33)
            } else {
                (0.0, 0.0, 0.0)
            };
            let text = win_ansi(&l.text);
            c.set_fill_rgb(fr, fg, fb)
                .begin_text()
                .set_font(Name(if l.bold { b"F2" } else { b"F1" }), l.size * k)
                .next_line(x(l.x), y(l.y))
                .show(Str(&text))
                .end_text();
        }
        // The QR code: black squares on the white card.
        let module = QR_SIDE / (self.side + 8) as f32;
        c.set_fill_rgb(0.0, 0.0, 0.0);
        for (col, row) in self.dark() {
            let (mx, my) = (QR_X + col as f32 * module, QR_Y + row as f32 * module);
            c.rect(x(mx), y(my + module), x(module), x(module));
        }
        c.fill_nonzero();
        pdf.stream(content_id, &c.finish());
        pdf.finish()
    }
}

/// Text for a WinAnsi-encoded base font: Latin-1 letters as they are,
/// anything else as `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|ch| match u32::from(ch) {
            c @ (0x20..=0x7e | 0xa0..=0xff) => c as u8,
            _ => b'?',
        })
        .collect()
}

/// The wallet card's file formats.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    Svg,
    Pdf,
}

/// Write the wallet card to `path` in `format`.
pub(crate) fn write(
    path: &Path,
    format: Format,
    card: &ShareLinkRecord,
    payload: &ShlPayload,
    owner: &str,
) -> Result<()> {
    let layout = WalletCard::new(card, payload, owner)?;
    let bytes = match format {
        Format::Svg => layout.svg().into_bytes(),
        Format::Pdf => layout.pdf(),
    };
    std::fs::write(path, bytes)
        .with_context(|| format!("cannot write the wallet card to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::win_ansi;

    #[test]
    fn win_ansi_keeps_latin1_and_marks_the_rest() {
        assert_eq!(win_ansi("Zoë Ó"), b"Zo\xeb \xd3".to_vec());
        assert_eq!(win_ansi("Łukasz 山"), b"?ukasz ?".to_vec());
    }
}
