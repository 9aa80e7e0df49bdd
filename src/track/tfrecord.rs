//! TFRecord framing, the container of TensorBoard's event files: each record is its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C
//! of the data (TensorFlow's `core/lib/io/record_writer.cc`).

use std::io::{self, Write};

/// TensorFlow's CRC mask: rotate right by 15 bits and add a constant, so that a CRC of data
/// that holds CRCs stays well distributed.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one record.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// The whole records at the start of `bytes`, and the byte length they span: a torn record at
/// the end (a process killed while writing it) or a corrupt one ends the list there.
pub fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let (len, crc) = header.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            break;
        }
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|n| (at + 12).checked_add(n))
        else {
            break;
        };
        let (Some(data), Some(crc)) = (bytes.get(at + 12..end), bytes.get(end..end + 4)) else {
            break;
        };
        if masked_crc(data).to_le_bytes() != crc {
            break;
        }
        records.push(data);
        at = end + 4;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_left_out() {
        let mut out = Vec::new();
        write_record(&mut out, b"first").unwrap();
        write_record(&mut out, b"").unwrap();
        write_record(&mut out, &[7u8; 300]).unwrap();
        let whole = out.len();
        let (records, end) = read_records(&out);
        assert_eq!(records, vec![&b"first"[..], &b""[..], &[7u8; 300][..]]);
        assert_eq!(end, whole);
        for cut in [whole - 1, whole - 4, whole - 300, whole - 310] {
            let (records, end) = read_records(&out[..cut]);
            assert_eq!(records.len(), 2, "cut at {cut}");
            assert_eq!(end, whole - (12 + 300 + 4));
        }
        out[whole - 5] ^= 1;
        assert_eq!(read_records(&out).0.len(), 2, "a flipped bit ends the list");
    }

    #[test]
    fn the_mask_is_tensorflows() {
        // CRC-32C's check value (RFC 3720, B.4), then TensorFlow's mask (crc32c.h).
        let crc = crc32c::crc32c(b"123456789");
        assert_eq!(crc, 0xe306_9283);
        // ((0xe3069283 >> 15) | (0xe3069283 << 17)) + 0xa282ead8, mod 2^32 (computed apart, in Python).
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }
}
