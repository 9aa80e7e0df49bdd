//! Dataset loaders on small files the tests write themselves.

use crate::support::{TINY, Workspace, stderr};
use flate2::{Compression, write::GzEncoder};
use kdgrid::data::{self, DataError, idx};
use kdgrid::manifest::{DatasetSpec, FileFormat};
use std::io::Write;
use std::path::Path;

fn write(path: &Path, bytes: &[u8], gz: bool) {
    if gz {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        std::fs::write(format!("{}.gz", path.display()), e.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// Writes a 4-by-4 IDX dataset: `n_train` and `n_test` images, labels `i % 3`.
fn write_idx(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n * 16).map(|i| (i % 251) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        write(
            &dir.join(format!("{prefix}-images-idx3-ubyte")),
            &idx::encode(true, &[n, 4, 4], &pixels),
            gz,
        );
        write(
            &dir.join(format!("{prefix}-labels-idx1-ubyte")),
            &idx::encode(false, &[n], &labels),
            gz,
        );
    }
}

fn spec(dir: &Path, train_limit: Option<usize>) -> DatasetSpec {
    DatasetSpec::Files {
        format: FileFormat::FashionMnist,
        path: dir.to_path_buf(),
        train_limit,
        test_limit: None,
        normalize: None,
        resize: None,
        text: None,
    }
}

#[test]
fn reads_plain_and_gzipped_idx() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), 6, 3, gz);
        let ds = data::load(&spec(dir.path(), None), None).unwrap();
        assert_eq!((ds.channels, ds.height, ds.width, ds.classes), (1, 4, 4, 3));
        assert_eq!(ds.train.len(), 6);
        assert_eq!(ds.test.len(), 3);
        assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(&ds.train.images[..3], &[0, 1, 2]);
        let limited = data::load(&spec(dir.path(), Some(4)), None).unwrap();
        assert_eq!(limited.train.len(), 4);
        assert_eq!(limited.train.images.len(), 4 * 16);
    }
}

#[test]
fn corrupt_files_are_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), 6, 3, false);
    let images = dir.path().join("train-images-idx3-ubyte");

    let mut bytes = std::fs::read(&images).unwrap();
    bytes[3] = 0x01;
    std::fs::write(&images, &bytes).unwrap();
    let err = data::load(&spec(dir.path(), None), None).unwrap_err();
    assert!(matches!(err, DataError::Corrupt { ref path, .. } if path == &images));
    assert!(
        err.to_string()
            .contains("wrong magic number 0x00000801, expected 0x00000803"),
        "{err}"
    );

    bytes[3] = 0x03;
    std::fs::write(&images, &bytes[..bytes.len() - 5]).unwrap();
    let err = data::load(&spec(dir.path(), None), None).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    write_idx(dir.path(), 6, 3, false);
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx::encode(false, &[5], &[0, 1, 2, 0, 1]),
    )
    .unwrap();
    let err = data::load(&spec(dir.path(), None), None).unwrap_err();
    assert!(err.to_string().contains("5 labels for 6 images"), "{err}");

    write_idx(dir.path(), 6, 3, false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = data::load(&spec(dir.path(), None), None).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
}

#[test]
fn synthetic_data_is_a_function_of_its_seed() {
    let spec = |seed| {
        DatasetSpec::Synthetic(kdgrid::manifest::SyntheticSpec {
            seed,
            classes: 3,
            train_size: 30,
            test_size: 9,
            image_size: 6,
            channels: 2,
            noise: 0.5,
        })
    };
    let a = data::load(&spec(1), None).unwrap();
    let b = data::load(&spec(1), None).unwrap();
    let c = data::load(&spec(2), None).unwrap();
    assert_eq!(a.train, b.train);
    assert_ne!(a.train, c.train);
    assert_eq!(a.image_len(), 72);
    assert_eq!(a.mean.len(), 2);
}

fn files_spec(format: FileFormat, dir: &Path) -> DatasetSpec {
    DatasetSpec::Files {
        format,
        path: dir.to_path_buf(),
        train_limit: None,
        test_limit: None,
        normalize: None,
        resize: None,
        text: None,
    }
}

/// `n` CIFAR records with labels `i % classes`; the first pixel byte is the record index.
fn cifar_records(n: usize, label_bytes: usize, classes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        if label_bytes == 2 {
            out.push(0); // coarse label
        }
        out.push((i % classes) as u8);
        let mut pixels = vec![7u8; 3072];
        pixels[0] = i as u8;
        out.extend(pixels);
    }
    out
}

#[test]
fn reads_cifar10_and_cifar100_binaries() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=5 {
        std::fs::write(
            dir.path().join(format!("data_batch_{i}.bin")),
            cifar_records(3, 1, 10),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), cifar_records(2, 1, 10)).unwrap();
    let ds = data::load(&files_spec(FileFormat::Cifar10, dir.path()), None).unwrap();
    assert_eq!(
        (ds.channels, ds.height, ds.width, ds.classes),
        (3, 32, 32, 10)
    );
    assert_eq!((ds.train.len(), ds.test.len()), (15, 2));
    assert_eq!(&ds.train.labels[..4], &[0, 1, 2, 0]);
    assert_eq!(
        ds.train.images[3072], 1,
        "record 1 starts after record 0's pixels"
    );

    let c100 = tempfile::tempdir().unwrap();
    std::fs::write(c100.path().join("train.bin"), cifar_records(4, 2, 100)).unwrap();
    std::fs::write(c100.path().join("test.bin"), cifar_records(2, 2, 100)).unwrap();
    let ds = data::load(&files_spec(FileFormat::Cifar100, c100.path()), None).unwrap();
    assert_eq!((ds.classes, ds.train.len()), (100, 4));
    assert_eq!(ds.train.labels, vec![0, 1, 2, 3]);
}

#[test]
fn corrupt_cifar_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=5 {
        std::fs::write(
            dir.path().join(format!("data_batch_{i}.bin")),
            cifar_records(2, 1, 10),
        )
        .unwrap();
    }
    let err = data::load(&files_spec(FileFormat::Cifar10, dir.path()), None).unwrap_err();
    assert!(err.to_string().contains("test_batch.bin"), "{err}");

    let mut bytes = cifar_records(2, 1, 10);
    bytes.truncate(bytes.len() - 10);
    std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
    let err = data::load(&files_spec(FileFormat::Cifar10, dir.path()), None).unwrap_err();
    assert!(
        err.to_string().contains("test_batch.bin") && err.to_string().contains("truncated record"),
        "{err}"
    );

    let mut bytes = cifar_records(2, 1, 10);
    bytes[0] = 42;
    std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
    let err = data::load(&files_spec(FileFormat::Cifar10, dir.path()), None).unwrap_err();
    assert!(err.to_string().contains("record 0 has label 42"), "{err}");
}

fn png(path: &Path, w: u32, h: u32, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, _| image::Rgb([shade, x as u8, 0]))
        .save(path)
        .unwrap();
}

#[test]
fn reads_image_folders_in_sorted_class_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (split, n) in [("train", 3), ("test", 1)] {
        for (class, shade) in [("dog", 200), ("cat", 100)] {
            for i in 0..n {
                png(
                    &root.join(split).join(class).join(format!("{i}.png")),
                    5,
                    4,
                    shade,
                );
            }
        }
    }
    let ds = data::load(&files_spec(FileFormat::ImageFolder, root), None).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width, ds.classes), (3, 4, 5, 2));
    // Classes in sorted order (cat < dog), files interleaved so that limits keep every class.
    assert_eq!(ds.train.labels, vec![0, 1, 0, 1, 0, 1]);
    assert_eq!(ds.test.len(), 2);
    // CHW: the red plane of a cat image is all 100, then the green plane counts x.
    assert_eq!(&ds.train.images[..20], &[100; 20]);
    assert_eq!(&ds.train.images[20..25], &[0, 1, 2, 3, 4]);

    png(&root.join("train/cat/odd.png"), 6, 4, 1);
    let err = data::load(&files_spec(FileFormat::ImageFolder, root), None).unwrap_err();
    assert!(
        err.to_string().contains("odd.png") && err.to_string().contains("wrong image size 6x4"),
        "{err}"
    );
    std::fs::remove_file(root.join("train/cat/odd.png")).unwrap();

    std::fs::write(root.join("train/cat/bad.png"), b"not a png").unwrap();
    let err = data::load(&files_spec(FileFormat::ImageFolder, root), None).unwrap_err();
    assert!(
        err.to_string().contains("bad.png") && err.to_string().contains("unreadable image"),
        "{err}"
    );
    std::fs::remove_file(root.join("train/cat/bad.png")).unwrap();

    std::fs::remove_dir_all(root.join("test/dog")).unwrap();
    let err = data::load(&files_spec(FileFormat::ImageFolder, root), None).unwrap_err();
    assert!(
        matches!(err, DataError::Missing { ref path } if path.ends_with("test/dog")),
        "{err}"
    );
}

/// A subset made of links: symlinked class folders and symlinked images read as the real ones.
#[test]
fn image_folders_follow_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let (real, linked) = (dir.path().join("real"), dir.path().join("linked"));
    for split in ["train", "test"] {
        for (class, shade) in [("dog", 200), ("cat", 100)] {
            png(&real.join(split).join(class).join("0.png"), 5, 4, shade);
        }
        std::fs::create_dir_all(linked.join(split).join("cat")).unwrap();
        std::os::unix::fs::symlink(real.join(split).join("dog"), linked.join(split).join("dog"))
            .unwrap();
        std::os::unix::fs::symlink(
            real.join(split).join("cat/0.png"),
            linked.join(split).join("cat/0.png"),
        )
        .unwrap();
    }
    let ours = data::load(&files_spec(FileFormat::ImageFolder, &linked), None).unwrap();
    let theirs = data::load(&files_spec(FileFormat::ImageFolder, &real), None).unwrap();
    assert_eq!(ours.classes, 2);
    assert_eq!(ours.train.labels, theirs.train.labels);
    assert_eq!(ours.train.images, theirs.train.images);
}

#[test]
fn augmentation_is_seeded_and_off_means_identity() {
    use rand::SeedableRng;
    let ds = data::load(
        &DatasetSpec::Synthetic(kdgrid::manifest::SyntheticSpec {
            seed: 1,
            classes: 2,
            train_size: 8,
            test_size: 2,
            image_size: 6,
            channels: 3,
            noise: 0.5,
        }),
        None,
    )
    .unwrap();
    let idx = [0, 3, 5];
    let gather = |aug, seed| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        ds.gather_augmented(&ds.train, &idx, aug, &mut rng, &mut out);
        out
    };
    let mut plain = Vec::new();
    ds.gather(&ds.train, &idx, &mut plain);
    let off = data::Augment {
        crop_padding: 0,
        flip: false,
    };
    assert_eq!(gather(off, 1), plain);
    let on = data::Augment {
        crop_padding: 2,
        flip: true,
    };
    assert_eq!(gather(on, 1), gather(on, 1));
    assert_ne!(gather(on, 1), gather(on, 2));
    assert_ne!(gather(on, 1), plain);
}

#[test]
fn image_folder_limits_keep_every_class() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for split in ["train", "test"] {
        for (class, shade) in [("a", 10), ("b", 20), ("c", 30)] {
            for i in 0..4 {
                png(
                    &root.join(split).join(class).join(format!("{i}.png")),
                    4,
                    4,
                    shade,
                );
            }
        }
    }
    let spec = DatasetSpec::Files {
        format: FileFormat::ImageFolder,
        path: root.to_path_buf(),
        train_limit: Some(3),
        test_limit: Some(6),
        normalize: None,
        resize: None,
        text: None,
    };
    let ds = data::load(&spec, None).unwrap();
    assert_eq!(ds.train.labels, vec![0, 1, 2]);
    assert_eq!(ds.test.labels, vec![0, 1, 2, 0, 1, 2]);
}

fn synthetic(classes: usize, train: usize) -> DatasetSpec {
    DatasetSpec::Synthetic(kdgrid::manifest::SyntheticSpec {
        seed: 3,
        classes,
        train_size: train,
        test_size: 8,
        image_size: 4,
        channels: 1,
        noise: 0.5,
    })
}

#[test]
fn validation_splits_are_stratified_and_left_out_of_normalization() {
    use kdgrid::manifest::Holdout;
    let full = data::load(&synthetic(4, 400), None).unwrap();
    let ds = data::load(&synthetic(4, 400), Some(Holdout::Count(20))).unwrap();
    let val = ds.val.as_ref().unwrap();
    assert_eq!((val.len(), ds.train.len()), (20, 380));
    let per_class = |labels: &[u8], c| labels.iter().filter(|&&l| l == c).count();
    for c in 0..4u8 {
        let share = per_class(&full.train.labels, c) as f64 / 400.0 * 20.0;
        assert!(
            (per_class(&val.labels, c) as f64 - share).abs() < 1.0,
            "class {c}: {} of 20 for a share of {share}",
            per_class(&val.labels, c)
        );
    }
    // The same images every time.
    let again = data::load(&synthetic(4, 400), Some(Holdout::Count(20))).unwrap();
    assert_eq!(again.val, ds.val);
    // Normalization describes the images trained on, not the validation ones.
    let mean = ds
        .train
        .images
        .iter()
        .map(|&p| p as f64 / 255.0)
        .sum::<f64>()
        / ds.train.images.len() as f64;
    assert!(
        (ds.mean[0] as f64 - mean).abs() < 1e-6,
        "{} vs {mean}",
        ds.mean[0]
    );
    assert_ne!(ds.mean, full.mean);
    // Even a tiny split holds every class.
    let tiny = data::load(&synthetic(4, 400), Some(Holdout::Count(4))).unwrap();
    let mut labels = tiny.val.unwrap().labels;
    labels.sort();
    assert_eq!(labels, vec![0, 1, 2, 3]);
}

#[test]
fn the_data_fingerprint_sees_content_not_location() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    for split in ["train", "test"] {
        for (class, shade) in [("a", 10), ("b", 20)] {
            for i in 0..2 {
                png(
                    &root.join(split).join(class).join(format!("{i}.png")),
                    4,
                    4,
                    shade,
                );
            }
        }
    }
    let spec = |path: &Path| files_spec(FileFormat::ImageFolder, path);
    let mut cache = data::DigestCache::open(dir.path());
    let first = data::fingerprint(&spec(&root), &mut cache).unwrap();
    assert_eq!(first, data::fingerprint(&spec(&root), &mut cache).unwrap());
    // The cache is on disk, keyed by size and modification time.
    assert!(dir.path().join(".cache/data-digests.json").exists());
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    assert_eq!(first, data::fingerprint(&spec(&moved), &mut cache).unwrap());
    png(&moved.join("train/b/1.png"), 4, 4, 21);
    assert_ne!(first, data::fingerprint(&spec(&moved), &mut cache).unwrap());
}

#[test]
fn stage_ids_follow_the_images_content_not_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    for split in ["train", "test"] {
        for (class, shade) in [("a", 10), ("b", 200)] {
            for i in 0..3 {
                png(
                    &root.join(split).join(class).join(format!("{i}.png")),
                    6,
                    6,
                    shade,
                );
            }
        }
    }
    let manifest = |folder: &str| {
        format!(
            "name = \"f\"\n[dataset]\nkind = \"image-folder\"\npath = \"{folder}\"\n\
             [models.s]\nconv = [4]\n[training]\nepochs = 1\nbatch-size = 4\noptimizer = \"sgd\"\n\
             lr = 0.1\n[grid]\nseed = [0, 1]\nchains = [[\"s\"]]\n"
        )
    };
    let ids = |folder: &str| -> Vec<String> {
        std::fs::write(dir.path().join("m.toml"), manifest(folder)).unwrap();
        let out = assert_cmd::Command::cargo_bin("kdgrid")
            .unwrap()
            .arg("--results")
            .arg(dir.path().join("results"))
            .args(["plan", "--json"])
            .arg(dir.path().join("m.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().into())
            .collect()
    };
    let first = ids("imgs");
    std::fs::rename(&root, dir.path().join("moved")).unwrap();
    assert_eq!(ids("moved"), first, "a moved folder keeps its stages");
    png(&dir.path().join("moved/train/b/2.png"), 6, 6, 201);
    let changed = ids("moved");
    assert_eq!(changed.len(), first.len());
    assert!(
        changed.iter().all(|id| !first.contains(id)),
        "every stage reads the changed image"
    );
}

#[test]
fn image_folders_resize_to_the_manifest_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Photos of different sizes, as real folders have.
    for (split, class, size) in [
        ("train", "apple", (20, 16)),
        ("train", "pear", (9, 12)),
        ("test", "apple", (8, 8)),
        ("test", "pear", (30, 10)),
    ] {
        png(
            &root.join(split).join(class).join("0.png"),
            size.0,
            size.1,
            150,
        );
    }
    let spec = DatasetSpec::Files {
        format: FileFormat::ImageFolder,
        path: root.to_path_buf(),
        train_limit: None,
        test_limit: None,
        normalize: None,
        resize: Some(8),
        text: None,
    };
    let ds = data::load(&spec, None).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width), (3, 8, 8));
    assert_eq!(
        ds.train.images.len(),
        2 * 3 * 8 * 8,
        "only the resized bytes are kept"
    );
    // The red plane is uniform in the source, so in the resized image too; the filter is fixed,
    // so a second load gives the same bytes.
    assert_eq!(&ds.train.images[..64], &[150; 64]);
    assert_eq!(
        data::load(&spec, None).unwrap().train.images,
        ds.train.images
    );
    // Without a size, the first mismatch is named.
    let keep = DatasetSpec::Files {
        format: FileFormat::ImageFolder,
        path: root.to_path_buf(),
        train_limit: None,
        test_limit: None,
        normalize: None,
        resize: None,
        text: None,
    };
    let err = data::load(&keep, None).unwrap_err();
    assert!(err.to_string().contains("wrong image size"), "{err}");

    // In a manifest: accepted for image folders, refused with its location for fixed-size data.
    let ws = Workspace::new(
        &TINY.replace(
            "kind = \"synthetic\"\nseed = 11\nclasses = 4\ntrain-size = 1024\ntest-size = 256\nimage-size = 10\nnoise = 0.5",
            "kind = \"cifar10\"\npath = \"cifar\"\nimage-size = 16",
        ),
    );
    let err = stderr(&ws.kdgrid(&["validate"]).code(2));
    // miette wraps long lines: look for the parts.
    for part in [
        "`dataset.image-size` applies to",
        "not `cifar10` (whose size is fixed)",
        "m.toml:7:14",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
}

/// Image folders decode to the pixels PyTorch's pipeline sees (`Image.open(f).convert("RGB")`
/// in PIL), byte for byte: a corpus written by PIL (JPEGs at three qualities, three chroma
/// subsamplings and odd sizes, progressive, grayscale, CMYK; PNGs of every colour type and
/// bit depth), each file compared with PIL's decoding of it.
/// The `name width height` lines the PIL corpus script writes.
fn corpus_index(path: &Path) -> Vec<(String, u32, u32)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[0].to_string(),
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn images_decode_to_pils_pixels() {
    // `make test` names its Python, which has Pillow; `make test-flex` (no torch download) runs
    // this only where the system Python has it.
    let python = match std::env::var("KDGRID_TORCH_PYTHON") {
        Ok(p) => p,
        Err(_) => {
            let has_pil = std::process::Command::new("python3")
                .args(["-c", "import PIL"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !has_pil {
                eprintln!("skipped: no Pillow for python3 (`make test` provides it)");
                return;
            }
            "python3".into()
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pil-corpus.py"
        ))
        .arg(dir.path())
        .output()
        .expect("python with Pillow (run through `make test`, or set KDGRID_TORCH_PYTHON)");
    assert!(
        out.status.success(),
        "{python} tests/fixtures/pil-corpus.py (needs Pillow: `make torch` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut checked = 0;
    for (name, width, height) in corpus_index(&dir.path().join("index.txt")) {
        let name = name.as_str();
        let pil = std::fs::read(dir.path().join(format!("{name}.rgb"))).unwrap();
        let ours = data::decode::rgb(&dir.path().join(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ours.dimensions(), (width, height), "{name}");
        assert_eq!(ours.as_raw().len(), pil.len(), "{name}");
        let pixels = || ours.as_raw().chunks_exact(3).zip(pil.chunks_exact(3));
        if let Some(p) = pixels().position(|(a, b)| a != b) {
            panic!(
                "{name}: pixel ({}, {}) is {:?}, PIL decodes {:?} ({} of {} pixels differ)",
                p % width as usize,
                p / width as usize,
                &ours.as_raw()[p * 3..p * 3 + 3],
                &pil[p * 3..p * 3 + 3],
                pixels().filter(|(a, b)| a != b).count(),
                width * height
            );
        }
        checked += 1;
    }
    assert!(checked >= 40, "the corpus has {checked} files");

    // `image-size` resizes as torchvision's `Resize` does on a PIL image.
    let resized = corpus_index(&dir.path().join("resize.txt"));
    assert_eq!(resized.len(), 8);
    for (name, width, height) in resized {
        let name = name.as_str();
        let pil = std::fs::read(dir.path().join(format!("{name}.{width}x{height}.rgb"))).unwrap();
        let decoded = data::decode::rgb(&dir.path().join(name)).unwrap();
        let ours = data::resize::bilinear(&decoded, width, height);
        let differing = ours
            .as_raw()
            .iter()
            .zip(&pil)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            ours.as_raw() == &pil[..],
            "{name} resized to {width}x{height}: {differing} of {} bytes differ from PIL's",
            pil.len()
        );
    }
}
