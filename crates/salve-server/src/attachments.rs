//! Attachment intake: decide what an uploaded file really is, keep only JPEG, PNG and PDF, and
//! make it safe to store and serve. Pure functions: no database, no HTTP handling.
//!
//! - The type comes from the content (magic bytes), never from the file name or Content-Type
//!   the client declared: those are the attacker's to choose.
//! - Images are decoded and re-encoded, so EXIF (GPS position, camera serial), XMP, ICC, IPTC,
//!   comments, PNG text chunks and anything appended after the image (a script, a zip, a
//!   phone's "motion photo" video) are gone. Only pixels survive.
//! - PDFs cannot be rebuilt here, so they are checked by heuristics (see [`check_pdf`]) and,
//!   like everything else, served with [`response_headers`]: exact type, `nosniff`,
//!   `Content-Security-Policy: sandbox`. The headers are the real protection; the checks are
//!   a second line.
//!
//! Decoding is CPU-bound (a 12 MP photo takes a noticeable fraction of a second): callers run
//! [`sanitize`] on a blocking thread and bound how many run at once.

use std::io::Cursor;

use axum::http::{HeaderName, HeaderValue, header};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};

/// Largest upload accepted, in bytes.
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// Largest image accepted, in pixels: a 48 MP phone photo fits. Decoded as RGB that is about
/// 150 MB, which is why the check happens on the header, before any pixel is decoded.
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;

/// Longest side accepted, in pixels (a 1 x 50,000,000 image is no photo).
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Memory the decoder may use; generous for the pixel limit, a backstop if a decoder misjudges.
const MAX_DECODER_ALLOC: u64 = 512 * 1024 * 1024;

/// Re-encoding quality for JPEG: visually lossless for photos of documents and skin.
const JPEG_QUALITY: u8 = 85;

/// The longest stem kept from a declared file name, in characters.
const MAX_STEM_CHARS: usize = 80;

/// The kinds Salve accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentType {
    Jpeg,
    Png,
    Pdf,
}

impl AttachmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Pdf => "pdf",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "jpeg" => Some(Self::Jpeg),
            "png" => Some(Self::Png),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// The exact `Content-Type` to serve.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Pdf => "application/pdf",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Pdf => "pdf",
        }
    }

    /// Used when the declared name has nothing worth keeping.
    fn default_stem(self) -> &'static str {
        match self {
            Self::Jpeg => "photo",
            Self::Png => "image",
            Self::Pdf => "document",
        }
    }
}

/// An attachment that passed [`sanitize`]: the bytes to seal and store.
#[derive(Clone, PartialEq, Eq)]
pub struct CleanAttachment {
    pub media_type: AttachmentType,
    /// Re-encoded pixels for images; the original bytes for PDFs.
    pub bytes: Vec<u8>,
    /// Safe to put in a header and on a patient's disk: a plain stem and our extension.
    pub file_name: String,
    /// (width, height) after applying the EXIF orientation; `None` for PDFs.
    pub dimensions: Option<(u32, u32)>,
}

// The bytes are patient content: keep them out of logs and panic messages.
impl std::fmt::Debug for CleanAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanAttachment")
            .field("media_type", &self.media_type)
            .field("len", &self.bytes.len())
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

/// What a refused file looked like, for a helpful message. Never decides anything by itself:
/// every kind here is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// Can carry scripts; browsers run them when the file is opened.
    Svg,
    Html,
    Xml,
    Gif,
    Webp,
    /// HEIC/HEIF (or AVIF): iPhone browsers convert to JPEG on upload; other clients must too.
    Heic,
    Tiff,
    Bmp,
    /// Also Office documents (docx, xlsx), which are zip files.
    Zip,
    /// Windows, Linux or macOS programs.
    Executable,
    Text,
    Unknown,
}

impl RefusedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Svg => "svg",
            Self::Html => "html",
            Self::Xml => "xml",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Heic => "heic",
            Self::Tiff => "tiff",
            Self::Bmp => "bmp",
            Self::Zip => "zip",
            Self::Executable => "executable",
            Self::Text => "text",
            Self::Unknown => "unknown",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Svg => "an SVG image (SVG can contain scripts)",
            Self::Html => "a web page",
            Self::Xml => "an XML document",
            Self::Gif => "a GIF image",
            Self::Webp => "a WebP image",
            Self::Heic => "a HEIC/HEIF image",
            Self::Tiff => "a TIFF image",
            Self::Bmp => "a BMP image",
            Self::Zip => "a zip archive or Office document",
            Self::Executable => "a program",
            Self::Text => "a text file",
            Self::Unknown => "a file of an unrecognised type",
        }
    }
}

/// Why an upload was refused. Messages describe the problem, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {} MiB", MAX_ATTACHMENT_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("{} is not accepted; send a JPEG or PNG photo, or a PDF", .0.describe())]
    UnsupportedType(RefusedKind),
    #[error(
        "the image is too large (at most {MAX_IMAGE_PIXELS} pixels, {MAX_IMAGE_SIDE} on a side)"
    )]
    TooManyPixels,
    #[error("the image is damaged or incomplete")]
    InvalidImage,
    #[error("the PDF is damaged or incomplete")]
    InvalidPdf,
    /// A PDF that is also a web page (a polyglot): a browser sniffing it would run the page.
    #[error("the PDF contains web page or script markup")]
    PdfContainsMarkup,
    /// Scripts, launch actions, embedded files and similar; `.0` is the PDF feature's name.
    #[error("the PDF contains active content ({0}); print it to a new PDF and send that")]
    PdfActiveContent(&'static str),
}

impl AttachmentError {
    /// A stable code for API problem documents and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::UnsupportedType(_) => "unsupported_type",
            Self::TooManyPixels => "too_many_pixels",
            Self::InvalidImage => "invalid_image",
            Self::InvalidPdf => "invalid_pdf",
            Self::PdfContainsMarkup => "pdf_contains_markup",
            Self::PdfActiveContent(_) => "pdf_active_content",
        }
    }
}

/// Checks and cleans one upload. Total: any input gives `Ok` or `Err`, never a panic.
pub fn sanitize(
    bytes: &[u8],
    declared_file_name: Option<&str>,
) -> Result<CleanAttachment, AttachmentError> {
    sanitize_with(bytes, declared_file_name, &ImageBounds::DEFAULT)
}

/// Image limits, separate so tests can use small ones and stay fast.
struct ImageBounds {
    max_pixels: u64,
    max_side: u32,
}

impl ImageBounds {
    const DEFAULT: Self = Self {
        max_pixels: MAX_IMAGE_PIXELS,
        max_side: MAX_IMAGE_SIDE,
    };
}

fn sanitize_with(
    bytes: &[u8],
    declared_file_name: Option<&str>,
    bounds: &ImageBounds,
) -> Result<CleanAttachment, AttachmentError> {
    if bytes.is_empty() {
        return Err(AttachmentError::Empty);
    }
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(AttachmentError::TooLarge);
    }
    let kind = detect(bytes)?;
    let file_name = safe_file_name(declared_file_name, kind);
    match kind {
        AttachmentType::Jpeg => {
            check_jpeg_structure(bytes)?;
            let (bytes, w, h) = reencode(bytes, ImageFormat::Jpeg, bounds)?;
            Ok(CleanAttachment {
                media_type: kind,
                bytes,
                file_name,
                dimensions: Some((w, h)),
            })
        }
        AttachmentType::Png => {
            let (bytes, w, h) = reencode(bytes, ImageFormat::Png, bounds)?;
            Ok(CleanAttachment {
                media_type: kind,
                bytes,
                file_name,
                dimensions: Some((w, h)),
            })
        }
        AttachmentType::Pdf => {
            check_pdf(bytes)?;
            Ok(CleanAttachment {
                media_type: kind,
                bytes: bytes.to_vec(),
                file_name,
                dimensions: None,
            })
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The accepted type, from the first bytes only; everything else is refused with a guess at
/// what it was.
fn detect(bytes: &[u8]) -> Result<AttachmentType, AttachmentError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(AttachmentType::Jpeg);
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(AttachmentType::Png);
    }
    // At byte 0 exactly: readers accept a PDF header up to 1 KiB in, which is what lets a
    // file start as HTML and still open as a PDF.
    if bytes.starts_with(b"%PDF-") {
        return Ok(AttachmentType::Pdf);
    }
    Err(AttachmentError::UnsupportedType(guess_refused(bytes)))
}

fn guess_refused(bytes: &[u8]) -> RefusedKind {
    let at = |offset: usize, magic: &[u8]| {
        bytes
            .get(offset..offset + magic.len())
            .is_some_and(|b| b == magic)
    };
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return RefusedKind::Gif;
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return RefusedKind::Webp;
    }
    if at(4, b"ftyp") {
        // ISO base media: HEIC/HEIF/AVIF photos (and videos, refused alike).
        return RefusedKind::Heic;
    }
    if at(0, b"II*\0") || at(0, b"MM\0*") {
        return RefusedKind::Tiff;
    }
    if at(0, b"BM") {
        return RefusedKind::Bmp;
    }
    if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") {
        return RefusedKind::Zip;
    }
    if at(0, b"MZ")
        || at(0, b"\x7fELF")
        || at(0, &[0xCF, 0xFA, 0xED, 0xFE])
        || at(0, &[0xCE, 0xFA, 0xED, 0xFE])
        || at(0, &[0xCA, 0xFE, 0xBA, 0xBE])
        || at(0, b"#!")
    {
        return RefusedKind::Executable;
    }
    guess_markup(bytes)
}

/// Markup after any BOM and whitespace, UTF-8 or UTF-16 (NULs dropped).
fn guess_markup(bytes: &[u8]) -> RefusedKind {
    let head: Vec<u8> = bytes
        .iter()
        .take(4096)
        .copied()
        .filter(|&b| b != 0)
        .collect();
    let head = head
        .strip_prefix(&[0xEF, 0xBB, 0xBF])
        .or_else(|| head.strip_prefix(&[0xFF, 0xFE]))
        .or_else(|| head.strip_prefix(&[0xFE, 0xFF]))
        .unwrap_or(&head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = head[start..].to_ascii_lowercase();
    if head.starts_with(b"<") {
        if contains(&head, b"<svg") {
            RefusedKind::Svg
        } else if contains(&head, b"<html")
            || contains(&head, b"<!doctype html")
            || contains(&head, b"<script")
            || contains(&head, b"<body")
        {
            RefusedKind::Html
        } else {
            RefusedKind::Xml
        }
    } else if std::str::from_utf8(&head).is_ok() {
        RefusedKind::Text
    } else {
        RefusedKind::Unknown
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Walks the JPEG's segments to its end-of-image marker, so a truncated upload is an error
/// rather than a photo with a grey lower half (the decoder is lenient about that). Data after
/// the end marker is ignored here and dropped by re-encoding.
fn check_jpeg_structure(b: &[u8]) -> Result<(), AttachmentError> {
    let invalid = AttachmentError::InvalidImage;
    let mut i = 2; // after SOI
    loop {
        if b.get(i) != Some(&0xFF) {
            return Err(invalid);
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *b.get(i).ok_or(AttachmentError::InvalidImage)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),          // EOI
            0x01 | 0xD0..=0xD7 => continue, // standalone markers
            0x00 => return Err(invalid),    // a stuffed byte outside a scan
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(invalid),
        };
        if len < 2 || i + len > b.len() {
            return Err(invalid);
        }
        i += len;
        if marker == 0xDA {
            // Entropy-coded data: 0xFF is followed by 0x00 (stuffing), a restart marker, or
            // more fill; anything else is the next marker.
            loop {
                match (b.get(i), b.get(i + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                    (Some(0xFF), Some(0xFF)) => i += 1,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return Err(invalid),
                }
            }
        }
    }
}

/// Decodes within the limits, applies the EXIF orientation, and encodes fresh pixels with no
/// metadata at all. ICC profiles go too (they can carry arbitrary text like any metadata); a wide-gamut
/// (Display P3) photo then shows slightly less saturated, which is acceptable for clinical
/// snapshots of documents, rashes and wounds.
fn reencode(
    bytes: &[u8],
    format: ImageFormat,
    bounds: &ImageBounds,
) -> Result<(Vec<u8>, u32, u32), AttachmentError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(bounds.max_side);
    limits.max_image_height = Some(bounds.max_side);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);

    // Builds the decoder from the header only; no pixel is decoded yet.
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    if w == 0
        || h == 0
        || w > bounds.max_side
        || h > bounds.max_side
        || u64::from(w) * u64::from(h) > bounds.max_pixels
    {
        return Err(AttachmentError::TooManyPixels);
    }
    // A malformed orientation is not worth refusing the photo for.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    img.apply_orientation(orientation);
    let (w, h) = (img.width(), img.height());

    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            // JPEG decodes to grey or RGB (CMYK is converted); anything else goes to RGB.
            let img = match img {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
                other => DynamicImage::ImageRgb8(other.to_rgb8()),
            };
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            img.write_with_encoder(encoder).map_err(image_error)?;
        }
        _ => {
            let img = match img {
                DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
                | DynamicImage::ImageRgb16(_)
                | DynamicImage::ImageRgba16(_) => img,
                other => DynamicImage::ImageRgba8(other.to_rgba8()),
            };
            let encoder = image::codecs::png::PngEncoder::new(&mut out);
            img.write_with_encoder(encoder).map_err(image_error)?;
        }
    }
    Ok((out, w, h))
}

fn image_error(e: image::ImageError) -> AttachmentError {
    match e {
        image::ImageError::Limits(_) => AttachmentError::TooManyPixels,
        _ => AttachmentError::InvalidImage,
    }
}

/// PDF names whose presence refuses the file: they run code, open other programs or files,
/// carry other files inside, or need a plug-in. (`/OpenAction` alone is common and harmless,
/// it sets the first page and zoom; with a script it needs `/JS` or `/JavaScript`, refused.)
const PDF_ACTIVE_NAMES: &[&str] = &[
    "JavaScript",
    "JS",
    "Launch",
    "EmbeddedFile",
    "EmbeddedFiles",
    "RichMedia",
    "XFA",
    "GoToE",
    "ImportData",
];

/// Start tags that make a file render as a web page if a browser ever sniffs it as HTML, or as
/// an SVG with script. Matched case-insensitively and only when followed by whitespace, `>` or
/// `/`, so that compressed binary data rarely matches by chance.
const MARKUP_TAGS: &[&[u8]] = &[
    b"<html",
    b"<script",
    b"<body",
    b"<!doctype",
    b"<svg",
    b"<iframe",
    b"<object",
    b"<embed",
];

/// How close to the end `%%EOF` must be (readers look in the last 1 KiB).
const PDF_EOF_WINDOW: usize = 1024;

/// Heuristic checks on a PDF, on raw bytes, without a PDF parser (no small, well-kept one that
/// handles hostile input was worth its weight here).
///
/// What this catches: a file that is not a whole PDF; a PDF/HTML polyglot (markup anywhere in
/// the raw bytes, which is what a sniffing browser would see); active content named in
/// dictionaries outside streams, including hex-escaped names (`/J#61vaScript`).
///
/// What it cannot see: names inside compressed object streams (PDF 1.5+ may put whole
/// dictionaries there) or encrypted strings. That is why PDFs are also only ever served with
/// `Content-Security-Policy: sandbox` and `nosniff` (see [`response_headers`]): a browser's
/// viewer then runs no script, and the bytes are never treated as a page.
pub fn check_pdf(b: &[u8]) -> Result<(), AttachmentError> {
    let version_ok = matches!(b.get(5..7), Some(&[b'1' | b'2', b'.']));
    let tail = &b[b.len().saturating_sub(PDF_EOF_WINDOW)..];
    if !b.starts_with(b"%PDF-") || !version_ok || !contains(tail, b"%%EOF") {
        return Err(AttachmentError::InvalidPdf);
    }
    if contains_markup(b) {
        return Err(AttachmentError::PdfContainsMarkup);
    }
    if let Some(name) = active_pdf_name(b) {
        return Err(AttachmentError::PdfActiveContent(name));
    }
    Ok(())
}

fn contains_markup(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        c == b'<'
            && MARKUP_TAGS.iter().any(|tag| {
                b.get(i..i + tag.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(tag))
                    && b.get(i + tag.len())
                        .is_none_or(|&n| n.is_ascii_whitespace() || n == b'>' || n == b'/')
            })
    })
}

/// PDF whitespace and delimiters end a name.
fn ends_pdf_name(c: u8) -> bool {
    matches!(
        c,
        0 | b'\t'
            | b'\n'
            | 0x0C
            | b'\r'
            | b' '
            | b'('
            | b')'
            | b'<'
            | b'>'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'/'
            | b'%'
    )
}

/// The first refused name outside stream data. Stream contents (page text, fonts, images) are
/// skipped: they are mostly compressed binary, where a short name like `/JS` turns up by chance.
fn active_pdf_name(b: &[u8]) -> Option<&'static str> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b's' && is_stream_keyword(b, i) {
            // Resume after `endstream`; a stream without one runs to the end of the file.
            let data = i + b"stream".len();
            i = match find(&b[data..], b"endstream") {
                Some(off) => data + off + b"endstream".len(),
                None => b.len(),
            };
            continue;
        }
        if b[i] == b'/' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && !ends_pdf_name(b[end]) {
                end += 1;
            }
            if let Some(name) = decode_pdf_name(&b[start..end])
                && let Some(hit) = PDF_ACTIVE_NAMES.iter().find(|n| n.as_bytes() == name)
            {
                return Some(hit);
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    None
}

/// `stream` as a keyword: after whitespace or `>>`, followed by an end of line.
fn is_stream_keyword(b: &[u8], i: usize) -> bool {
    let before_ok = i == 0 || matches!(b[i - 1], b'\r' | b'\n' | b' ' | b'\t' | b'>');
    let after = b.get(i + 6);
    before_ok && b[i..].starts_with(b"stream") && matches!(after, Some(b'\r' | b'\n'))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A name's bytes with `#xx` escapes decoded; `None` for names too long to be one we look for.
fn decode_pdf_name(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() > 64 {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'#'
            && let Some(v) = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    Some(out)
}

/// A file name safe to show and to suggest for saving: the declared name's last path
/// component, kept as a stem only if it is plain (letters, digits, spaces, `-_.()`), with the
/// extension of the detected type. Anything else (control or bidi characters, quotes, shell
/// or HTML metacharacters) gives the default, e.g. `photo.jpg`.
pub fn safe_file_name(declared: Option<&str>, kind: AttachmentType) -> String {
    let stem = declared
        .map(|name| {
            // Both separators: a Windows path arrives with backslashes.
            let last = name.rsplit(['/', '\\']).next().unwrap_or("");
            let stem = match last.rsplit_once('.') {
                Some((stem, _ext)) => stem,
                None => last,
            };
            stem.trim_matches(|c: char| c.is_whitespace() || c == '.' || c == '_' || c == '-')
        })
        .filter(|stem| {
            !stem.is_empty()
                && stem.chars().any(char::is_alphanumeric)
                && stem
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')'))
        })
        .map(|stem| {
            stem.chars()
                .take(MAX_STEM_CHARS)
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .unwrap_or_else(|| kind.default_stem().to_owned());
    format!("{stem}.{}", kind.extension())
}

/// Headers for serving an attachment. `inline` shows it in the browser (images and PDFs can
/// be); otherwise it downloads. Either way the browser may not sniff another type, run script,
/// load anything, or let another origin embed it.
pub fn response_headers(
    kind: AttachmentType,
    file_name: &str,
    inline: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let disposition = content_disposition(if inline { "inline" } else { "attachment" }, file_name);
    vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.media_type()),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'self'"),
        ),
        (header::CONTENT_DISPOSITION, disposition),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ]
}

/// RFC 6266: an ASCII `filename` for old clients and an RFC 5987 `filename*` with the real
/// name. Any name is accepted (the header cannot be broken by quotes, CR/LF or non-ASCII).
fn content_disposition(disposition: &str, file_name: &str) -> HeaderValue {
    let ascii: String = file_name
        .chars()
        .map(|c| {
            // No quote, backslash or `%`: some clients unescape the plain parameter.
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in file_name.bytes() {
        // RFC 5987 attr-char
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    let value = format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    // Every byte above is visible ASCII or a space, so this cannot fail; the fallback keeps
    // the function total anyway.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests;
