//! Inputs are built here by hand (EXIF, PNG chunks, PDFs), so no binary fixtures are needed.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GPS_MARKER: &[u8] = b"SALVE-GPS-MARKER-40.7128N-74.0060W";
const PNG_TEXT_MARKER: &[u8] = b"SALVE-PNG-TEXT-MARKER";

// ---- builders ------------------------------------------------------------------------------

fn gradient(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, ((x + y) * 8) as u8])
    })
}

fn plain_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    DynamicImage::ImageRgb8(gradient(w, h))
        .write_with_encoder(encoder)
        .unwrap();
    out
}

fn plain_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut out);
    DynamicImage::ImageRgb8(gradient(w, h))
        .write_with_encoder(encoder)
        .unwrap();
    out
}

/// A little-endian TIFF block as found in EXIF: orientation, and a GPS IFD with a latitude
/// and a processing-method string carrying [`GPS_MARKER`].
fn exif_tiff(orientation: u16) -> Vec<u8> {
    fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        t.extend(tag.to_le_bytes());
        t.extend(kind.to_le_bytes());
        t.extend(count.to_le_bytes());
        t.extend(value);
    }
    const IFD0: u32 = 8;
    const GPS_IFD: u32 = IFD0 + 2 + 2 * 12 + 4;
    const LATITUDE: u32 = GPS_IFD + 2 + 3 * 12 + 4;
    const MARKER: u32 = LATITUDE + 24;

    let mut t = b"II*\0".to_vec();
    t.extend(IFD0.to_le_bytes());
    t.extend(2u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut t, 0x0112, 3, 1, [o[0], o[1], 0, 0]); // Orientation, SHORT
    entry(&mut t, 0x8825, 4, 1, GPS_IFD.to_le_bytes()); // GPSInfo pointer, LONG
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len() as u32, GPS_IFD);
    t.extend(3u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0"); // GPSLatitudeRef, ASCII
    entry(&mut t, 0x0002, 5, 3, LATITUDE.to_le_bytes()); // GPSLatitude, RATIONAL x3
    let len = GPS_MARKER.len() as u32;
    entry(&mut t, 0x001B, 7, len, MARKER.to_le_bytes()); // GPSProcessingMethod
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len() as u32, LATITUDE);
    for (num, den) in [(40u32, 1u32), (42, 1), (4632, 100)] {
        t.extend(num.to_le_bytes());
        t.extend(den.to_le_bytes());
    }
    t.extend(GPS_MARKER);
    t
}

fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    s.extend(payload);
    s
}

/// A JPEG as a phone would send it: EXIF with GPS and orientation, XMP, a comment.
fn phone_jpeg(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let plain = plain_jpeg(w, h);
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(exif_tiff(orientation));
    let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\
        <rdf:Description exif:GPSLatitude=\"40,42.77N\"/></x:xmpmeta>";
    let mut out = plain[..2].to_vec(); // SOI
    out.extend(jpeg_segment(0xE1, &exif));
    out.extend(jpeg_segment(0xE1, xmp));
    out.extend(jpeg_segment(0xFE, b"taken at 12 Elm Street"));
    out.extend(&plain[2..]);
    out
}

/// The markers of a JPEG up to its first scan.
fn jpeg_markers(b: &[u8]) -> Vec<u8> {
    let mut markers = Vec::new();
    let mut i = 2;
    while i + 4 <= b.len() && b[i] == 0xFF {
        let marker = b[i + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        i += 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
    }
    markers
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend(data);
    c.extend(&body);
    c.extend(crc32(&body).to_be_bytes());
    c
}

/// Signature (8) + IHDR (4 + 4 + 13 + 4).
const PNG_AFTER_IHDR: usize = 33;

fn png_with_chunks(w: u32, h: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
    let plain = plain_png(w, h);
    let mut out = plain[..PNG_AFTER_IHDR].to_vec();
    for c in chunks {
        out.extend(c);
    }
    out.extend(&plain[PNG_AFTER_IHDR..]);
    out
}

fn png_chunk_types(b: &[u8]) -> Vec<String> {
    let mut types = Vec::new();
    let mut i = 8;
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        types.push(String::from_utf8_lossy(&b[i + 4..i + 8]).into_owned());
        i += 12 + len;
    }
    types
}

fn pdf(catalog_extra: &str, content: &[u8]) -> Vec<u8> {
    let mut b = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    b.extend(
        format!("1 0 obj\n<< /Type /Catalog /Pages 2 0 R {catalog_extra}>>\nendobj\n").as_bytes(),
    );
    b.extend(b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n");
    b.extend(
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>\nendobj\n",
    );
    b.extend(format!("4 0 obj\n<< /Length {} >>\nstream\n", content.len()).as_bytes());
    b.extend(content);
    b.extend(b"\nendstream\nendobj\n");
    b.extend(b"xref\n0 5\n0000000000 65535 f \ntrailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n0\n%%EOF\n");
    b
}

fn clean_pdf() -> Vec<u8> {
    pdf("", b"BT /F1 12 Tf 20 100 Td (Your form) Tj ET")
}

fn refused_as(bytes: &[u8]) -> RefusedKind {
    match sanitize(bytes, Some("photo.jpg")) {
        Err(AttachmentError::UnsupportedType(kind)) => kind,
        other => panic!("expected a refusal by type, got {other:?}"),
    }
}

// ---- images --------------------------------------------------------------------------------

#[test]
fn jpeg_exif_gps_xmp_and_comments_are_gone() {
    let input = phone_jpeg(16, 8, 1);
    assert!(contains(&input, b"Exif\0\0") && contains(&input, GPS_MARKER));

    let clean = sanitize(&input, Some("IMG_0042.JPG")).unwrap();
    assert_eq!(clean.media_type, AttachmentType::Jpeg);
    assert_eq!(clean.dimensions, Some((16, 8)));
    assert_eq!(clean.file_name, "IMG_0042.jpg");

    let out = &clean.bytes;
    for needle in [
        b"Exif\0\0".as_slice(),
        GPS_MARKER,
        b"xmpmeta",
        b"GPSLatitude",
        b"Elm Street",
        &4632u32.to_le_bytes(),
    ] {
        assert!(
            !contains(out, needle),
            "{:?} survived",
            String::from_utf8_lossy(needle)
        );
    }
    // Only the JFIF header and the segments needed to decode: no APP1..APP15, no comment.
    let markers = jpeg_markers(out);
    assert!(
        markers
            .iter()
            .all(|m| !(0xE1..=0xEF).contains(m) && *m != 0xFE),
        "{markers:02X?}"
    );
    let decoded = image::load_from_memory_with_format(out, ImageFormat::Jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (16, 8));
}

#[test]
fn jpeg_orientation_is_applied_before_exif_is_dropped() {
    // 6 = rotate 90° clockwise to display: a 16x8 sensor image is an 8x16 photo.
    let clean = sanitize(&phone_jpeg(16, 8, 6), None).unwrap();
    assert_eq!(clean.dimensions, Some((8, 16)));
    let decoded = image::load_from_memory(&clean.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (8, 16));
    assert_eq!(clean.file_name, "photo.jpg");
}

#[test]
fn data_appended_to_a_jpeg_is_dropped() {
    let mut input = plain_jpeg(8, 8);
    input.extend(b"<html><script>alert(document.cookie)</script></html>");
    let clean = sanitize(&input, None).unwrap();
    assert!(!contains(&clean.bytes, b"<script"));
    assert!(!contains(&clean.bytes, b"<html"));
}

#[test]
fn png_text_exif_and_xmp_chunks_are_gone() {
    // The eXIf chunk holds the bare TIFF block, without the JPEG "Exif" prefix.
    let exif = exif_tiff(6);
    let mut text = b"Comment\0".to_vec();
    text.extend(PNG_TEXT_MARKER);
    let itxt = b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta>GPSLatitude 40.7128</x:xmpmeta>";
    let input = png_with_chunks(
        16,
        8,
        &[
            png_chunk(b"tEXt", &text),
            png_chunk(b"eXIf", &exif),
            png_chunk(b"iTXt", itxt),
        ],
    );
    assert!(png_chunk_types(&input).contains(&"eXIf".to_owned()));

    let clean = sanitize(&input, Some("Screenshot 2024-05-01 (2).png")).unwrap();
    assert_eq!(clean.media_type, AttachmentType::Png);
    assert_eq!(clean.file_name, "Screenshot 2024-05-01 (2).png");
    let types = png_chunk_types(&clean.bytes);
    assert!(
        types
            .iter()
            .all(|t| ["IHDR", "IDAT", "IEND"].contains(&t.as_str())),
        "{types:?}"
    );
    for needle in [PNG_TEXT_MARKER, GPS_MARKER, b"xmpmeta".as_slice()] {
        assert!(!contains(&clean.bytes, needle));
    }
    // The eXIf orientation (6) was honoured, then dropped.
    assert_eq!(clean.dimensions, Some((8, 16)));
    let decoded = image::load_from_memory_with_format(&clean.bytes, ImageFormat::Png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (8, 16));
}

#[test]
fn png_keeps_transparency() {
    let rgba = image::RgbaImage::from_fn(4, 4, |x, _| image::Rgba([255, 0, 0, (x * 60) as u8]));
    let mut input = Vec::new();
    DynamicImage::ImageRgba8(rgba)
        .write_with_encoder(image::codecs::png::PngEncoder::new(&mut input))
        .unwrap();
    let clean = sanitize(&input, None).unwrap();
    let decoded = image::load_from_memory(&clean.bytes).unwrap();
    assert!(decoded.color().has_alpha());
    assert_eq!(clean.file_name, "image.png");
}

#[test]
fn oversized_files_are_refused_before_anything_else() {
    let mut big = plain_jpeg(8, 8);
    big.resize(MAX_ATTACHMENT_BYTES + 1, 0);
    assert_eq!(sanitize(&big, None), Err(AttachmentError::TooLarge));
    assert_eq!(sanitize(&[], None), Err(AttachmentError::Empty));
}

#[test]
fn huge_dimensions_are_refused_from_the_header() {
    // A PNG declaring 100,000 x 100,000 with no pixel data at all: refused on the header.
    let mut ihdr = Vec::new();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut bomb = PNG_SIGNATURE.to_vec();
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    bomb.extend(png_chunk(b"IDAT", b"x\x9c\x00\x00"));
    bomb.extend(png_chunk(b"IEND", &[]));
    assert_eq!(sanitize(&bomb, None), Err(AttachmentError::TooManyPixels));

    // A real JPEG whose frame header claims 10,000 x 10,000 (each side allowed, the area not),
    // and one claiming 60,000 x 60,000.
    for (w, h) in [(10_000u16, 10_000u16), (60_000, 60_000), (65_535, 1)] {
        let mut jpeg = plain_jpeg(8, 8);
        let sof = jpeg
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("baseline frame header");
        jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        assert_eq!(
            sanitize(&jpeg, None),
            Err(AttachmentError::TooManyPixels),
            "{w}x{h}"
        );
    }
}

#[test]
fn truncated_images_are_errors() {
    let jpeg = phone_jpeg(32, 32, 1);
    for cut in [3, 20, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
        assert_eq!(
            sanitize(&jpeg[..cut], None),
            Err(AttachmentError::InvalidImage),
            "cut at {cut} of {}",
            jpeg.len()
        );
    }
    let png = plain_png(32, 32);
    for cut in [9, PNG_AFTER_IHDR - 3, PNG_AFTER_IHDR + 10] {
        assert_eq!(
            sanitize(&png[..cut], None),
            Err(AttachmentError::InvalidImage),
            "cut at {cut}"
        );
    }
}

// ---- refused types -------------------------------------------------------------------------

#[test]
fn svg_is_refused_in_every_disguise() {
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let variants = [
        svg.to_owned(),
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{svg}"),
        format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \
             \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n{svg}"
        ),
        format!("\n\t  \r\n{svg}"),
        format!("\u{FEFF}{svg}"),
        format!("\u{FEFF}  <?xml version=\"1.0\"?>{}", svg.to_uppercase()),
    ];
    for v in &variants {
        assert_eq!(refused_as(v.as_bytes()), RefusedKind::Svg, "{v:?}");
    }
    // UTF-16LE with a BOM.
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in svg.encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    assert_eq!(refused_as(&utf16), RefusedKind::Svg);
    // The message says why without quoting the file.
    let message = sanitize(svg.as_bytes(), None).unwrap_err().to_string();
    assert!(message.contains("SVG") && !message.contains("alert"));
}

#[test]
fn html_and_xml_are_refused() {
    for html in [
        "<!DOCTYPE html><html><body>hi</body></html>",
        "<html><script>alert(1)</script>",
        "  <script>alert(1)</script>",
        "<HTML><BODY>",
    ] {
        assert_eq!(refused_as(html.as_bytes()), RefusedKind::Html, "{html:?}");
    }
    assert_eq!(
        refused_as(b"<?xml version=\"1.0\"?><note/>"),
        RefusedKind::Xml
    );
    assert_eq!(refused_as(b"just some text"), RefusedKind::Text);
}

#[test]
fn other_formats_are_refused_by_content_whatever_the_name() {
    let cases: [(&[u8], RefusedKind); 10] = [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", RefusedKind::Gif),
        (b"GIF87a\x01\x00\x01\x00", RefusedKind::Gif),
        (
            b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00",
            RefusedKind::Webp,
        ),
        (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
            RefusedKind::Heic,
        ),
        (
            b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
            RefusedKind::Heic,
        ),
        (b"II*\x00\x08\x00\x00\x00", RefusedKind::Tiff),
        (b"PK\x03\x04\x14\x00\x06\x00", RefusedKind::Zip),
        (b"MZ\x90\x00\x03\x00\x00\x00", RefusedKind::Executable),
        (b"\x7fELF\x02\x01\x01\x00", RefusedKind::Executable),
        (b"\x00\x01\x02\x03\xff\xfe\xfd", RefusedKind::Unknown),
    ];
    for (bytes, kind) in cases {
        assert_eq!(refused_as(bytes), kind, "{bytes:02X?}");
        // A declared PDF or PNG name changes nothing.
        assert!(sanitize(bytes, Some("scan.pdf")).is_err());
    }
    assert_eq!(
        AttachmentError::UnsupportedType(RefusedKind::Heic).code(),
        "unsupported_type"
    );
}

// ---- PDF -----------------------------------------------------------------------------------

#[test]
fn a_clean_pdf_is_accepted_unchanged() {
    let input = clean_pdf();
    let clean = sanitize(&input, Some("Intake form.PDF")).unwrap();
    assert_eq!(clean.media_type, AttachmentType::Pdf);
    assert_eq!(clean.bytes, input);
    assert_eq!(clean.file_name, "Intake form.pdf");
    assert_eq!(clean.dimensions, None);
}

#[test]
fn names_inside_stream_data_do_not_count() {
    // Compressed page data can contain `/JS` by chance; only dictionaries are read.
    let input = pdf("", b"x\x9c/JS /JavaScript \x00\xff binary");
    assert!(sanitize(&input, None).is_ok());
    // An `/OpenAction` that only sets the first view is fine.
    let input = pdf("/OpenAction [3 0 R /Fit] ", b"BT ET");
    assert!(sanitize(&input, None).is_ok());
}

#[test]
fn pdf_html_polyglots_are_refused() {
    let polyglot = pdf(
        "",
        b"<html><script>fetch('/api/v1/conversations')</script></html>",
    );
    assert_eq!(
        sanitize(&polyglot, None),
        Err(AttachmentError::PdfContainsMarkup)
    );
    // In a comment near the top, upper case.
    let mut early = b"%PDF-1.7\n%<HTML><BODY onload=x()>\n".to_vec();
    early.extend(&clean_pdf()[9..]);
    assert_eq!(
        sanitize(&early, None),
        Err(AttachmentError::PdfContainsMarkup)
    );
    for tag in [
        "<svg onload=x>",
        "<iframe src=x>",
        "<!DOCTYPE html>",
        "<body>",
    ] {
        let input = pdf(&format!("/Note ({tag}) "), b"BT ET");
        assert_eq!(
            sanitize(&input, None),
            Err(AttachmentError::PdfContainsMarkup),
            "{tag}"
        );
    }
    // HTML first with a PDF after it is not a PDF at all.
    let mut html_first = b"<html><script>alert(1)</script>".to_vec();
    html_first.extend(clean_pdf());
    assert_eq!(refused_as(&html_first), RefusedKind::Html);
}

#[test]
fn pdfs_with_active_content_are_refused() {
    let cases = [
        (
            "/OpenAction << /S /JavaScript /JS (app.alert(1)) >> ",
            "JavaScript",
        ),
        ("/AA << /O << /JS 5 0 R >> >> ", "JS"),
        (
            "/OpenAction << /S /J#61vaScript /J#53 (x) >> ",
            "JavaScript",
        ),
        ("/OpenAction << /S /Launch /F (cmd.exe) >> ", "Launch"),
        ("/Names << /EmbeddedFiles 6 0 R >> ", "EmbeddedFiles"),
        ("/AcroForm << /XFA 7 0 R >> ", "XFA"),
    ];
    for (extra, name) in cases {
        let input = pdf(extra, b"BT ET");
        assert_eq!(
            sanitize(&input, None),
            Err(AttachmentError::PdfActiveContent(name)),
            "{extra}"
        );
    }
    // Longer names that merely start the same are not refused.
    assert!(sanitize(&pdf("/JSFont 1 ", b"BT ET"), None).is_ok());
}

#[test]
fn incomplete_pdfs_are_refused() {
    let full = clean_pdf();
    assert_eq!(
        sanitize(&full[..full.len() / 2], None),
        Err(AttachmentError::InvalidPdf)
    );
    assert_eq!(sanitize(b"%PDF-", None), Err(AttachmentError::InvalidPdf));
    assert_eq!(
        sanitize(b"%PDF-x.y\n%%EOF", None),
        Err(AttachmentError::InvalidPdf)
    );
    // `%%EOF` far from the end: something big was appended.
    let mut appended = full.clone();
    appended.extend(vec![b' '; 4096]);
    assert_eq!(sanitize(&appended, None), Err(AttachmentError::InvalidPdf));
}

// ---- names and headers ---------------------------------------------------------------------

#[test]
fn declared_names_never_carry_paths_or_odd_characters() {
    let png = plain_png(4, 4);
    let name = |declared: &str| sanitize(&png, Some(declared)).unwrap().file_name;
    assert_eq!(name("../../etc/passwd.jpg"), "passwd.png");
    assert_eq!(name(r"C:\Users\ana\Desktop\rash.jpeg"), "rash.png");
    assert_eq!(name("..\\..\\boot.ini"), "boot.png");
    assert_eq!(name(".htaccess"), "image.png");
    assert_eq!(name("../"), "image.png");
    assert_eq!(name(""), "image.png");
    assert_eq!(name("evil\r\nSet-Cookie: x.png"), "image.png");
    assert_eq!(name("\"quoted\".png"), "image.png");
    assert_eq!(name("<img src=x onerror=alert(1)>.png"), "image.png");
    // Right-to-left override: "gpj.exe" displayed as "exe.jpg".
    assert_eq!(name("photo\u{202E}gpj.exe"), "image.png");
    assert_eq!(name("Ergebnis Müller.pdf"), "Ergebnis Müller.png");
    assert_eq!(name("análisis de sangre"), "análisis de sangre.png");
    let long = format!("{}.png", "a".repeat(500));
    assert_eq!(name(&long), format!("{}.png", "a".repeat(MAX_STEM_CHARS)));
}

fn header_value<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> &'a str {
    let found: Vec<_> = headers.iter().filter(|(n, _)| n == name).collect();
    assert_eq!(found.len(), 1, "{name}");
    found[0].1.to_str().unwrap()
}

#[test]
fn response_headers_lock_the_file_down() {
    let h = response_headers(AttachmentType::Pdf, "Intake form.pdf", false);
    assert_eq!(header_value(&h, "content-type"), "application/pdf");
    assert_eq!(header_value(&h, "x-content-type-options"), "nosniff");
    let csp = header_value(&h, "content-security-policy");
    assert!(csp.starts_with("sandbox;") && csp.contains("default-src 'none'"));
    assert_eq!(
        header_value(&h, "content-disposition"),
        "attachment; filename=\"Intake form.pdf\"; filename*=UTF-8''Intake%20form.pdf"
    );
    assert_eq!(header_value(&h, "cache-control"), "private, no-store");
    assert_eq!(
        header_value(&h, "cross-origin-resource-policy"),
        "same-origin"
    );

    let h = response_headers(AttachmentType::Jpeg, "photo.jpg", true);
    assert_eq!(header_value(&h, "content-type"), "image/jpeg");
    assert!(header_value(&h, "content-disposition").starts_with("inline; "));
    assert_eq!(
        header_value(
            &response_headers(AttachmentType::Png, "a.png", true),
            "content-type"
        ),
        "image/png"
    );
}

#[test]
fn content_disposition_survives_any_name() {
    let h = response_headers(AttachmentType::Pdf, "Análisis \"x\"\r\n%41;.pdf", false);
    let d = header_value(&h, "content-disposition");
    assert_eq!(
        d,
        "attachment; filename=\"An_lisis _x____41_.pdf\"; \
         filename*=UTF-8''An%C3%A1lisis%20%22x%22%0D%0A%2541%3B.pdf"
    );
}

// ---- robustness ----------------------------------------------------------------------------

/// Deterministic fuzzing: 2,000 random and mutated inputs must each give `Ok` or `Err`.
/// Small image bounds keep it fast; the code paths are the same.
#[test]
fn sanitize_never_panics_on_mutated_input() {
    let seeds = [
        phone_jpeg(24, 16, 6),
        plain_png(16, 16),
        png_with_chunks(8, 8, &[png_chunk(b"tEXt", b"k\0v")]),
        clean_pdf(),
        pdf("/OpenAction << /S /JavaScript >> ", b"BT ET"),
        b"<svg/>".to_vec(),
    ];
    let bounds = ImageBounds {
        max_pixels: 256 * 256,
        max_side: 1024,
    };
    let mut rng = StdRng::seed_from_u64(0x5A17E);
    let mut accepted = 0;
    for round in 0..2_000 {
        let input: Vec<u8> = if round % 10 == 0 {
            let len = rng.gen_range(0..512);
            (0..len).map(|_| rng.r#gen()).collect()
        } else {
            let mut b = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..6) {
                if b.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..b.len());
                match rng.gen_range(0..5) {
                    0 => b[at] = rng.r#gen(),
                    1 => b[at] ^= 1 << rng.gen_range(0..8),
                    2 => b.truncate(at.max(1)),
                    3 => {
                        let n = rng.gen_range(1..16).min(b.len() - at);
                        b.drain(at..at + n);
                    }
                    _ => {
                        let junk: Vec<u8> =
                            (0..rng.gen_range(1..16)).map(|_| rng.r#gen()).collect();
                        b.splice(at..at, junk);
                    }
                }
            }
            b
        };
        let name = String::from_utf8_lossy(&input[..input.len().min(20)]).into_owned();
        if let Ok(clean) = sanitize_with(&input, Some(&name), &bounds) {
            accepted += 1;
            assert!(!clean.file_name.contains(['/', '\\', '"', '\r', '\n']));
            if clean.media_type != AttachmentType::Pdf {
                // What we produce is itself clean input.
                assert!(sanitize_with(&clean.bytes, None, &bounds).is_ok());
            }
        }
    }
    // The mutations must leave some inputs valid, or the accepting paths went untested.
    assert!(accepted > 100, "only {accepted} accepted");
}
