//! Image folders in the ImageFolder layout: `train/<class>/*.png|jpg|jpeg` and
//! `test/<class>/*`, classes in sorted order, every image decoded to RGB as PIL decodes it
//! ([`super::decode`]) and of one size.
//!
//! Images are taken in class-interleaved order (the first file of every class, then the second
//! of every class, ...), so a `train-limit` or `test-limit` keeps every class, in equal numbers
//! rather than the first classes only; files beyond a limit are never decoded.

use super::{DataError, Split};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loaded splits, class names and image size.
pub struct Folder {
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// Class names, sorted; a label is an index into this.
    pub classes: Vec<String>,
    /// `[height, width]` of every image.
    pub size: [usize; 2],
}

/// Loads `dir/train` and `dir/test`, at most `limits` images of each.
pub fn load(
    dir: &Path,
    limits: [Option<usize>; 2],
    resize: Option<usize>,
) -> Result<Folder, DataError> {
    let train_dir = dir.join("train");
    let classes = class_folders(&train_dir)?;
    if classes.is_empty() {
        return Err(DataError::Corrupt {
            path: train_dir,
            what: "no class folders".into(),
        });
    }
    if classes.len() > 256 {
        return Err(DataError::Corrupt {
            path: train_dir,
            what: format!("{} class folders; at most 256 are supported", classes.len()),
        });
    }
    let test_dir = dir.join("test");
    let test_classes = class_folders(&test_dir)?;
    if let Some(missing) = classes.iter().find(|c| !test_classes.contains(c)) {
        return Err(DataError::Missing {
            path: test_dir.join(missing),
        });
    }
    if let Some(extra) = test_classes.iter().find(|c| !classes.contains(c)) {
        return Err(DataError::Corrupt {
            path: test_dir.join(extra),
            what: "class folder has no counterpart under `train/`".into(),
        });
    }
    let mut size = None;
    let train = read_split(&list(&train_dir, &classes, limits[0])?, resize, &mut size)?;
    let test = read_split(&list(&test_dir, &classes, limits[1])?, resize, &mut size)?;
    Ok(Folder {
        train,
        test,
        classes,
        size: size.unwrap_or([0, 0]),
    })
}

/// The class folders of `dir`, sorted.
pub fn class_folders(dir: &Path) -> Result<Vec<String>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
        });
    }
    let mut classes = Vec::new();
    // Symlinked class folders and images count (a subset made of links to a full copy);
    // walkdir reports a link loop as an error.
    for entry in WalkDir::new(dir)
        .follow_links(true)
        .min_depth(1)
        .max_depth(1)
    {
        let entry = entry.map_err(|e| walk_error(dir, e))?;
        if entry.file_type().is_dir() {
            classes.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    classes.sort();
    Ok(classes)
}

fn walk_error(dir: &Path, e: walkdir::Error) -> DataError {
    DataError::Io {
        path: e
            .path()
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf),
        source: e.into(),
    }
}

/// The image files of `dir`, labelled, in class-interleaved order, at most `limit` of them.
pub fn list(
    dir: &Path,
    classes: &[String],
    limit: Option<usize>,
) -> Result<Vec<(PathBuf, u8)>, DataError> {
    let mut per_class = Vec::new();
    for class in classes {
        let class_dir = dir.join(class);
        let files: Vec<PathBuf> = WalkDir::new(&class_dir)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.map_err(|e| walk_error(&class_dir, e)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        per_class.push(files.into_iter());
    }
    let mut out = Vec::new();
    let longest = per_class.iter().map(|f| f.len()).max().unwrap_or(0);
    for _ in 0..longest {
        for (label, files) in per_class.iter_mut().enumerate() {
            if let Some(path) = files.next() {
                out.push((path, label as u8));
            }
        }
    }
    out.truncate(limit.unwrap_or(usize::MAX));
    Ok(out)
}

/// Decodes `files` to RGB with PIL's pixels ([`super::decode`]), resized to `resize` x `resize`
/// when set, also as PIL does ([`super::resize`]; only the resized bytes are kept, so memory
/// follows the target size).
fn read_split(
    files: &[(PathBuf, u8)],
    resize: Option<usize>,
    size: &mut Option<[usize; 2]>,
) -> Result<Split, DataError> {
    let mut split = Split {
        images: Vec::new(),
        labels: Vec::new(),
    };
    for (path, label) in files {
        let img = super::decode::rgb(path)?;
        let img = match resize {
            Some(side) if img.dimensions() != (side as u32, side as u32) => {
                super::resize::bilinear(&img, side as u32, side as u32)
            }
            _ => img,
        };
        let this = [img.height() as usize, img.width() as usize];
        match size {
            None => *size = Some(this),
            Some(expected) if *expected != this => {
                return Err(DataError::Corrupt {
                    path: path.clone(),
                    what: format!(
                        "wrong image size {}x{}, expected {}x{} like the first image",
                        this[1], this[0], expected[1], expected[0]
                    ),
                });
            }
            Some(_) => {}
        }
        // HWC → CHW, the layout of every split in memory.
        let (h, w) = (this[0], this[1]);
        let raw = img.into_raw();
        for c in 0..3 {
            split.images.extend((0..h * w).map(|p| raw[p * 3 + c]));
        }
        split.labels.push(*label);
    }
    Ok(split)
}
