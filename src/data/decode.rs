//! Decoding image-folder files to RGB with the pixels PIL gives, bit for bit.
//!
//! A teacher trained in PyTorch saw its images through torchvision's `ImageFolder`, which
//! decodes with PIL: `Image.open(path).convert("RGB")`. JPEG decoders may differ in their IDCT
//! and chroma upsampling (the `image` crate's decoder differed from PIL in about a quarter of
//! the pixels of CIFAR-10 JPEGs, by up to 4 levels), so JPEGs are decoded by the same code as
//! PIL's: libjpeg-turbo's, as forked by MozJPEG and compiled from source by `mozjpeg-sys`
//! (plain C, no assembler), with libjpeg's defaults, which PIL keeps (the accurate integer
//! IDCT, fancy upsampling). What each kind of file becomes, as with PIL:
//!
//! - JPEG: YCbCr or RGB, baseline or progressive, any chroma subsampling; grayscale with its
//!   channel repeated; CMYK and YCCK inverted (PIL assumes Adobe's convention) and converted
//!   by PIL's formula. A file that ends early is an error, as in PIL; recoverable corruption
//!   inside the data is decoded through, as in PIL.
//! - PNG, any colour type and bit depth: palettes looked up, alpha dropped (not composited),
//!   grayscale repeated, bit depths below 8 scaled to 0..=255, 16-bit samples cut to their
//!   high byte, except 16-bit grayscale, which PIL reads as integers and saturates at 255.
//!
//! The format is told by the file's first bytes, not its name; anything else is an error.
//! Every error names the file.

use super::DataError;
use image::RgbImage;
use mozjpeg::ColorSpace;
use mozjpeg_sys::{JWRN_JPEG_EOF, jpeg_common_struct, jpeg_error_mgr};
use std::os::raw::c_int;
use std::path::Path;

/// Decodes the image file at `path` to RGB, as `Image.open(path).convert("RGB")` does in PIL.
pub fn rgb(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    rgb_from_bytes(&bytes).map_err(|what| DataError::Corrupt {
        path: path.to_path_buf(),
        what: format!("unreadable image: {what}"),
    })
}

/// [`rgb`] on the file's bytes; an error says what is wrong.
fn rgb_from_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg(bytes).map_err(|e| format!("JPEG: {e}"))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(bytes).map_err(|e| format!("PNG: {e}"))
    } else {
        Err("neither a JPEG nor a PNG file".into())
    }
}

fn jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    // libjpeg reports a fatal error by calling `error_exit`, which must not return: ours
    // unwinds (mozjpeg-sys compiles the C code with unwind tables) to this `catch_unwind`.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let decompress = mozjpeg::Decompress::builder()
            .with_err(error_manager())
            .from_mem(bytes)?;
        let cmyk = matches!(
            decompress.color_space(),
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
        );
        // libjpeg converts YCbCr to RGB and repeats a grayscale channel, as PIL's
        // `convert("RGB")` does; CMYK (and YCCK, which libjpeg turns into CMYK) is PIL's own.
        let mut started = if cmyk {
            decompress.to_colorspace(ColorSpace::JCS_CMYK)?
        } else {
            decompress.rgb()?
        };
        let (width, height) = (started.width(), started.height());
        let mut pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        if cmyk {
            pixels = pixels.chunks_exact(4).flat_map(cmyk_to_rgb).collect();
        }
        Ok((width, height, pixels))
    });
    let (width, height, pixels) = match decoded {
        Ok(Ok(image)) => image,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(payload) => {
            return Err(payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "libjpeg failed".into()));
        }
    };
    RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| "libjpeg returned fewer pixels than the image has".into())
}

/// One inverted CMYK pixel (Adobe's convention, which PIL assumes for every CMYK JPEG) to RGB
/// by PIL's `cmyk2rgb`: each channel is `255 - k - c * (255 - k) / 255`, rounded PIL's way.
fn cmyk_to_rgb(inverted: &[u8]) -> [u8; 3] {
    let nk = i32::from(inverted[3]); // 255 - k
    let channel = |v: u8| {
        let t = (255 - i32::from(v)) * nk + 128;
        (nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8
    };
    [
        channel(inverted[0]),
        channel(inverted[1]),
        channel(inverted[2]),
    ]
}

/// libjpeg's standard error manager with fatal errors unwinding (see [`jpeg`]) and warnings
/// ignored, as PIL ignores them, except the one saying the data ended early: PIL refuses a
/// truncated file ("image file is truncated"), where libjpeg would fill in gray.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: `jpeg_std_error` fills in every field of the zeroed struct.
    let mut manager: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut manager) };
    manager.error_exit = Some(error_exit);
    manager.emit_message = Some(emit_message);
    manager
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    std::panic::resume_unwind(Box::new(message(cinfo)));
}

unsafe extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg calls this with `err` pointing at the manager it was given.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF {
        std::panic::resume_unwind(Box::new(message(cinfo)));
    }
}

/// The text of libjpeg's current message.
fn message(cinfo: &mut jpeg_common_struct) -> String {
    // libjpeg writes up to JMSG_LENGTH_MAX (200) bytes; the binding's type says 80, so the
    // function is called through a pointer to a buffer of the full size.
    type Bound = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &[u8; 80]);
    type Format = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8);
    let mut buffer = [0u8; 200];
    // SAFETY: `err` points at the manager set up by `error_manager`, whose `format_message`
    // is libjpeg's, taking a buffer of JMSG_LENGTH_MAX bytes.
    let (format, code) = unsafe { ((*cinfo.err).format_message, (*cinfo.err).msg_code) };
    match format {
        Some(format) => {
            let format = unsafe { std::mem::transmute::<Bound, Format>(format) };
            unsafe { format(cinfo, buffer.as_mut_ptr()) };
            let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end]).into_owned()
        }
        None => format!("libjpeg message {code}"),
    }
}

fn png(bytes: &[u8]) -> Result<RgbImage, String> {
    use png::{BitDepth, ColorType, Transformations};
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Palettes to RGB(A), bit depths below 8 scaled to 8 bits, tRNS to an alpha channel.
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let gray16 = {
        let info = reader.info();
        info.color_type == ColorType::Grayscale && info.bit_depth == BitDepth::Sixteen
    };
    let size = reader
        .output_buffer_size()
        .ok_or("image too large to decode")?;
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).map_err(|e| e.to_string())?;
    buffer.truncate(frame.buffer_size());
    let channels = frame.color_type.samples();
    let bytes_per_sample = if frame.bit_depth == BitDepth::Sixteen {
        2
    } else {
        1
    };
    let rgb = frame.color_type == ColorType::Rgb || frame.color_type == ColorType::Rgba;
    let sample = |pixel: &[u8], channel: usize| -> u8 {
        let s = &pixel[channel * bytes_per_sample..];
        match bytes_per_sample {
            1 => s[0],
            // PIL reads 16-bit grayscale as integers ("I;16"), and its RGB conversion
            // saturates them at 255; every other 16-bit sample is cut to its high byte.
            _ if gray16 => u8::try_from(u16::from_be_bytes([s[0], s[1]])).unwrap_or(255),
            _ => s[0],
        }
    };
    let pixels = buffer
        .chunks_exact(channels * bytes_per_sample)
        .flat_map(|pixel| {
            if rgb {
                [sample(pixel, 0), sample(pixel, 1), sample(pixel, 2)]
            } else {
                [sample(pixel, 0); 3]
            }
        })
        .collect();
    RgbImage::from_raw(frame.width, frame.height, pixels)
        .ok_or_else(|| "decoded fewer pixels than the image has".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16x16 JPEG (libjpeg's default quality and 4:2:0 subsampling).
    fn tiny_jpeg() -> Vec<u8> {
        let mut image = image::RgbImage::new(16, 16);
        for (x, y, p) in image.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 16) as u8, (y * 16) as u8, 128]);
        }
        let mut compress = mozjpeg::Compress::new(ColorSpace::JCS_RGB);
        compress.set_size(16, 16);
        let mut started = compress.start_compress(Vec::new()).unwrap();
        started.write_scanlines(image.as_raw()).unwrap();
        started.finish().unwrap()
    }

    #[test]
    fn decodes_a_jpeg() {
        let image = rgb_from_bytes(&tiny_jpeg()).unwrap();
        assert_eq!(image.dimensions(), (16, 16));
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_errors_naming_the_file() {
        let jpeg = tiny_jpeg();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("half.jpg", jpeg[..jpeg.len() / 2].to_vec()),
            ("no-end.jpg", jpeg[..jpeg.len() - 2].to_vec()),
            ("header.jpg", jpeg[..3].to_vec()),
            ("garbage.jpg", {
                let mut b = jpeg[..20].to_vec();
                b.extend([0xFF, 0xC0, 0x00, 0x03, 0x01]);
                b
            }),
            ("text.jpg", b"not an image".to_vec()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            match rgb(&path) {
                Err(e @ DataError::Corrupt { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(name), "{text}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn cmyk_follows_pil() {
        // PIL: `Image.new("CMYK", (1, 1), (c, m, y, k)).convert("RGB")`, inverted for a JPEG.
        for (cmyk, rgb) in [
            ([0, 0, 0, 0], [255, 255, 255]),
            ([255, 0, 0, 0], [0, 255, 255]),
            ([100, 50, 200, 30], [137, 181, 49]),
        ] {
            let inverted = cmyk.map(|v: u8| 255 - v);
            assert_eq!(cmyk_to_rgb(&inverted), rgb, "{cmyk:?}");
        }
    }
}
