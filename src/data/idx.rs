//! The IDX format of MNIST and Fashion-MNIST (`*-idx3-ubyte` images, `*-idx1-ubyte` labels),
//! plain or gzipped.

use super::{DataError, Split};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Splits, image size `[height, width]` and class count read from IDX files.
pub struct Idx {
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// `[height, width]`.
    pub size: [usize; 2],
    /// One more than the largest label (at least 2).
    pub classes: usize,
}

/// Loads `train-*` and `t10k-*` IDX files from `dir`.
pub fn load_folder(dir: &Path) -> Result<Idx, DataError> {
    let (train, shape) = load_pair(dir, "train")?;
    let (test, test_shape) = load_pair(dir, "t10k")?;
    if shape != test_shape {
        return Err(DataError::Corrupt {
            path: dir.join("t10k-images-idx3-ubyte"),
            what: format!("test images are {test_shape:?}, training images {shape:?}"),
        });
    }
    let classes = train
        .labels
        .iter()
        .chain(&test.labels)
        .max()
        .map_or(0, |&m| m as usize + 1);
    Ok(Idx {
        train,
        test,
        size: shape,
        classes: classes.max(2),
    })
}

fn load_pair(dir: &Path, prefix: &str) -> Result<(Split, [usize; 2]), DataError> {
    let images_path = dir.join(format!("{prefix}-images-idx3-ubyte"));
    let labels_path = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let (ipath, ibytes) = read_maybe_gz(&images_path)?;
    let (lpath, lbytes) = read_maybe_gz(&labels_path)?;
    let (idims, images) = parse(&ipath, &ibytes, IMAGES_MAGIC, 3)?;
    let (ldims, labels) = parse(&lpath, &lbytes, LABELS_MAGIC, 1)?;
    if idims[0] != ldims[0] {
        return Err(DataError::Corrupt {
            path: lpath,
            what: format!(
                "{} labels for {} images in `{}`",
                ldims[0],
                idims[0],
                ipath.display()
            ),
        });
    }
    Ok((
        Split {
            images: images.to_vec(),
            labels: labels.to_vec(),
        },
        [idims[1], idims[2]],
    ))
}

/// Reads `path`, or `path.gz` when the plain file is absent; gunzips when the content is gzip.
fn read_maybe_gz(path: &Path) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let path = if path.exists() {
        path.to_path_buf()
    } else if gz.exists() {
        gz
    } else {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
        });
    };
    let io = |source| DataError::Io {
        path: path.clone(),
        source,
    };
    let raw = std::fs::read(&path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Corrupt {
                path: path.clone(),
                what: format!("bad gzip stream: {e}"),
            })?;
        Ok((path, out))
    } else {
        Ok((path, raw))
    }
}

/// Checks the header and returns the dimensions and the payload.
pub fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    rank: usize,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let corrupt = |what: String| DataError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(corrupt(format!(
            "file is {} bytes, shorter than its {header}-byte header",
            bytes.len()
        )));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    if word(0) != magic {
        return Err(corrupt(format!(
            "wrong magic number {:#010x}, expected {magic:#010x}",
            word(0)
        )));
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    let expected: usize = dims.iter().product();
    let payload = &bytes[header..];
    if payload.len() < expected {
        return Err(corrupt(format!(
            "truncated: {dims:?} needs {expected} bytes of data, found {}",
            payload.len()
        )));
    }
    Ok((dims, &payload[..expected]))
}

/// Encodes an IDX file (used by tests and tools that prepare data).
pub fn encode(magic_images: bool, dims: &[usize], data: &[u8]) -> Vec<u8> {
    let magic = if magic_images {
        IMAGES_MAGIC
    } else {
        LABELS_MAGIC
    };
    let mut out = magic.to_be_bytes().to_vec();
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
