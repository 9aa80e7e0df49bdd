//! The store's own tests: locks, record seals across versions, formats.

use super::*;
use serde::{Deserialize, Serialize};

#[test]
fn only_a_held_lock_reads_as_in_use() {
    assert!(contended(&fs2::lock_contended_error()));
    #[cfg(unix)]
    for errno in [libc::ENOLCK, libc::ENOSYS, libc::EIO] {
        assert!(
            !contended(&std::io::Error::from_raw_os_error(errno)),
            "{errno}"
        );
    }
}

fn record(id: &str) -> StageRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "status": "failed", "error": "diverged", "params": 10,
        "test_accuracy": null, "test_loss": null, "train_seconds": 1.5, "epochs": [],
        "backend": "flex", "kdgrid_version": "0.1.0"
    }))
    .unwrap()
}

fn stage(store: &Store, id: &str) -> (StageId, PathBuf) {
    let id: StageId = serde_json::from_value(serde_json::json!(id)).unwrap();
    std::fs::create_dir_all(store.stage_dir(&id)).unwrap();
    let path = store.stage_dir(&id).join("record.json");
    (id, path)
}

#[test]
fn a_record_with_a_field_this_version_does_not_know_reads_as_valid_unless_edited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000aa");
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&record(id.as_str()), None, &claim).unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Found(_)
    ));
    // A newer kdgrid writes a field more, sealed canonically.
    let mut sealed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    sealed["record"]["energy_joules"] = serde_json::json!(12.5);
    sealed["canonical_sha256"] = serde_json::json!(canonical_seal(&sealed["record"]));
    std::fs::write(&path, serde_json::to_vec_pretty(&sealed).unwrap()).unwrap();
    match lookup(store.root(), &id).unwrap() {
        Lookup::Found(r) => assert_eq!(*r, record(id.as_str())),
        other => panic!("{other:?}"),
    }
    // The seal covers the unknown field too.
    sealed["record"]["energy_joules"] = serde_json::json!(13.0);
    std::fs::write(&path, serde_json::to_vec_pretty(&sealed).unwrap()).unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Corrupt { .. }
    ));
}

#[test]
fn records_of_the_previous_version_read_and_it_reads_ours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000bb");
    // As the previous version wrote it: one seal over the struct, pretty-printed.
    #[derive(Serialize)]
    struct Old {
        sha256: String,
        record: StageRecord,
    }
    let r = record(id.as_str());
    let old = Old {
        sha256: seal(&r),
        record: r.clone(),
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Found(_)
    ));
    // What we write, read the previous version's way: its seal checks out.
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&r, None, &claim).unwrap();
    #[derive(Deserialize)]
    struct OldRead {
        sha256: String,
        record: StageRecord,
    }
    let read: OldRead = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(seal(&read.record), read.sha256);
}

#[test]
fn a_store_of_a_newer_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), "x").unwrap());
    let format = dir.path().join("x/stages/FORMAT");
    std::fs::write(&format, format!("{}\n", FORMAT + 1)).unwrap();
    let err = Store::open(dir.path(), "x").unwrap_err().to_string();
    assert!(
        err.contains(&format!("has format {}", FORMAT + 1))
            && err.contains(&format!("reads formats up to {FORMAT}")),
        "{err}"
    );
    // An older one is read as it is.
    std::fs::write(&format, "1\n").unwrap();
    Store::open(dir.path(), "x").unwrap();
}

#[test]
fn a_store_held_by_another_sweep_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Store::open(dir.path(), "x").unwrap();
    let err = Store::open(dir.path(), "x").unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { holder, .. } if holder.starts_with("pid ")),
        "{err:?}"
    );
}

#[test]
fn weights_rewritten_in_place_with_the_same_size_read_as_corrupt_after_a_cached_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, _) = stage(&store, "00000000000000cc");
    let model = store.stage_dir(&id).join("model.bpk");
    std::fs::write(&model, b"weights-1").unwrap();
    let mut r = record(id.as_str());
    r.model_sha256 = Some(file_digest(&model).unwrap());
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&r, None, &claim).unwrap();
    let found = |store: &Store| matches!(lookup(store.root(), &id).unwrap(), Lookup::Found(_));
    assert!(found(&store));
    assert!(found(&store), "a second lookup reads the cached digest");
    // Past one tick of a coarse file-system clock (older kernels stamp mtime per jiffy).
    let tick = || std::thread::sleep(std::time::Duration::from_millis(30));
    tick();
    std::fs::write(&model, b"weights-2").unwrap();
    assert!(
        !found(&store),
        "same size, new bytes: the cache must not hide it"
    );
    tick();
    std::fs::write(&model, b"weights-1").unwrap();
    assert!(found(&store));
}
