//! Dataset loaders on small files the tests write themselves.

use flate2::{Compression, write::GzEncoder};
use kdgrid::data::{self, DataError, idx};
use kdgrid::manifest::DatasetSpec;
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
    DatasetSpec::Idx {
        name: "fashion-mnist".into(),
        path: dir.to_path_buf(),
        train_limit,
        test_limit: None,
    }
}

#[test]
fn reads_plain_and_gzipped_idx() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), 6, 3, gz);
        let ds = data::load(&spec(dir.path(), None)).unwrap();
        assert_eq!((ds.channels, ds.height, ds.width, ds.classes), (1, 4, 4, 3));
        assert_eq!(ds.train.len(), 6);
        assert_eq!(ds.test.len(), 3);
        assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(&ds.train.images[..3], &[0, 1, 2]);
        let limited = data::load(&spec(dir.path(), Some(4))).unwrap();
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
    let err = data::load(&spec(dir.path(), None)).unwrap_err();
    assert!(matches!(err, DataError::Corrupt { ref path, .. } if path == &images));
    assert!(
        err.to_string()
            .contains("wrong magic number 0x00000801, expected 0x00000803"),
        "{err}"
    );

    bytes[3] = 0x03;
    std::fs::write(&images, &bytes[..bytes.len() - 5]).unwrap();
    let err = data::load(&spec(dir.path(), None)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    write_idx(dir.path(), 6, 3, false);
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte"),
        idx::encode(false, &[5], &[0, 1, 2, 0, 1]),
    )
    .unwrap();
    let err = data::load(&spec(dir.path(), None)).unwrap_err();
    assert!(err.to_string().contains("5 labels for 6 images"), "{err}");

    write_idx(dir.path(), 6, 3, false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = data::load(&spec(dir.path(), None)).unwrap_err();
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
    let a = data::load(&spec(1)).unwrap();
    let b = data::load(&spec(1)).unwrap();
    let c = data::load(&spec(2)).unwrap();
    assert_eq!(a.train, b.train);
    assert_ne!(a.train, c.train);
    assert_eq!(a.image_len(), 72);
    assert_eq!(a.mean.len(), 2);
}
