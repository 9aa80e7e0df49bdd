//! The store's own tests: locks, record seals across versions, formats.

use super::*;
use lookup::{Sealed, canonical_seal, seal};
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

/// Stages `bytes` as a stage's weights.
fn staged(store: &Store, id: &StageId, bytes: &[u8]) -> StagedModel {
    store
        .save_model(id, |p| std::fs::write(p, bytes))
        .unwrap()
        .unwrap()
}

fn trained(id: &StageId, model: &StagedModel) -> StageRecord {
    StageRecord {
        status: Status::Ok,
        error: None,
        model_sha256: Some(model.sha256.clone()),
        model_bytes: Some(model.bytes),
        ..record(id.as_str())
    }
}

#[test]
fn weights_go_under_their_digest_and_model_bpk_names_the_same_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000ab");
    let model = staged(&store, &id, b"weights");
    let r = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    assert!(store.commit(&r, Some(model), &claim).unwrap());
    drop(claim);
    let named = store.model_path(&id);
    let sha = r.model_sha256.clone().unwrap();
    assert_eq!(
        named.file_name().unwrap().to_str().unwrap(),
        format!("model-{sha}.bpk")
    );
    let legacy = store.stage_dir(&id).join("model.bpk");
    assert_eq!(
        std::fs::metadata(&named).unwrap().ino(),
        std::fs::metadata(&legacy).unwrap().ino(),
        "model.bpk is a second name of the weights, for older versions"
    );
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Found(_)
    ));
    // Older versions read `model.bpk` and the struct seal; both check out.
    let sealed: Sealed = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(sealed.record["model_file"], format!("model-{sha}.bpk"));
    // No temporary file is left, and a store held alone keeps no claim.
    let left: Vec<String> = std::fs::read_dir(store.stage_dir(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.starts_with("claim"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_task_that_lost_its_claim_or_was_beaten_to_the_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open_shared(dir.path(), "x").unwrap();
    let b = Store::open_shared(dir.path(), "x").unwrap();
    let (id, path) = stage(&a, "00000000000000ac");
    let ours = a.claim(&id).unwrap().unwrap();
    let a_model = staged(&a, &id, b"weights of a");
    // B takes the stage over (A was stopped past the stale time) and commits it.
    let theirs = Claim::acquire(&b.stage_dir(&id), false, &watch::Watch::default())
        .unwrap()
        .unwrap();
    assert_eq!(theirs.generation(), 2);
    assert!(!ours.holds());
    let b_model = staged(&b, &id, b"weights of b");
    let b_record = trained(&id, &b_model);
    assert!(b.commit(&b_record, Some(b_model), &theirs).unwrap());
    drop(theirs);
    let committed = std::fs::read(&path).unwrap();
    // A resumes: its claim is gone with the commit, yet the record stands.
    let a_record = trained(&id, &a_model);
    assert!(!a.commit(&a_record, Some(a_model), &ours).unwrap());
    drop(ours);
    assert_eq!(std::fs::read(&path).unwrap(), committed);
    match lookup(a.root(), &id).unwrap() {
        Lookup::Found(r) => assert_eq!(r.model_sha256, b_record.model_sha256),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        file_digest(&a.stage_dir(&id).join("model.bpk")).unwrap(),
        b_record.model_sha256.clone().unwrap()
    );
    let weights: Vec<String> = std::fs::read_dir(a.stage_dir(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model") && n.ends_with(".bpk"))
        .collect();
    assert_eq!(
        weights.len(),
        2,
        "B's weights under two names, none of A's: {weights:?}"
    );
}

#[test]
fn a_lost_claim_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_shared(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000ad");
    let claim = store.claim(&id).unwrap().unwrap();
    std::fs::write(
        store.stage_dir(&id).join("claim.2"),
        "pid 2 on elsewhere [boot x ns 1] #2\n",
    )
    .unwrap();
    let model = staged(&store, &id, b"weights");
    let r = trained(&id, &model);
    assert!(matches!(
        store.commit(&r, Some(model), &claim),
        Err(StoreError::ClaimLost { holder, .. }) if holder == "pid 2 on elsewhere"
    ));
    assert!(!path.exists());
    assert!(!store.stage_dir(&id).join("model.bpk").exists());
}

#[test]
fn a_sealed_record_this_version_cannot_read_is_refused_not_trained_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000ae");
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&record(id.as_str()), None, &claim).unwrap();
    drop(claim);
    // A newer kdgrid's record: a status this version does not know, sealed.
    let mut sealed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    sealed["record"]["status"] = serde_json::json!("preempted");
    sealed["record"]["kdgrid_version"] = serde_json::json!("9.0.0");
    sealed["canonical_sha256"] = serde_json::json!(canonical_seal(&sealed["record"]));
    std::fs::write(&path, serde_json::to_vec_pretty(&sealed).unwrap()).unwrap();
    match lookup(store.root(), &id) {
        Err(e @ StoreError::NewerRecord { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("kdgrid 9.0.0") && text.contains("record.json"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The same edit without a matching seal is damage: corrupt.
    sealed["canonical_sha256"] = serde_json::json!("00");
    std::fs::write(&path, serde_json::to_vec_pretty(&sealed).unwrap()).unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Corrupt { .. }
    ));
}

#[test]
fn unreadable_weights_are_an_error_and_a_corrupt_record_is_kept_beside_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000af");
    let model = staged(&store, &id, b"weights");
    let r = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&r, Some(model), &claim).unwrap();
    drop(claim);
    // Unreadable (here: not a file; on NFS, EIO or ESTALE): reported with its path.
    let named = store.model_path(&id);
    std::fs::rename(&named, dir.path().join("kept")).unwrap();
    std::fs::create_dir(&named).unwrap();
    match lookup(store.root(), &id) {
        Err(StoreError::Io { path, .. }) => assert_eq!(path, named),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir(&named).unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Corrupt { .. }
    ));
    // Trained again: the damaged record is moved aside, not deleted.
    let old = std::fs::read(&path).unwrap();
    let model = staged(&store, &id, b"weights again");
    let again = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    assert!(store.commit(&again, Some(model), &claim).unwrap());
    assert!(
        matches!(lookup(store.root(), &id).unwrap(), Lookup::Found(r) if r.model_sha256 == again.model_sha256)
    );
    let aside: Vec<_> = std::fs::read_dir(store.stage_dir(&id))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("record.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(&aside[0]).unwrap(), old);
}

#[test]
fn a_weights_digest_is_noted_beside_the_file_and_trusted_only_while_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, _) = stage(&store, "00000000000000b0");
    let model = staged(&store, &id, b"weights");
    let r = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&r, Some(model), &claim).unwrap();
    let weights = store.model_path(&id);
    let note = weights.with_file_name(format!(
        "{}.checked",
        weights.file_name().unwrap().to_str().unwrap()
    ));
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(text.contains(r.model_sha256.as_deref().unwrap()), "{text}");
    // A new process trusts the note without reading the weights: a note claiming other bytes
    // is believed while the file's size, times and inode are the noted ones...
    std::fs::write(
        &note,
        text.replace(r.model_sha256.as_deref().unwrap(), &"0".repeat(64)),
    )
    .unwrap();
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Corrupt { .. }
    ));
    // ...and ignored once the file changed in any way (here: touched).
    let f = std::fs::File::options().write(true).open(&weights).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    assert!(matches!(
        lookup(store.root(), &id).unwrap(),
        Lookup::Found(_)
    ));
}

#[test]
fn a_store_held_alone_replaces_a_failed_record_but_never_a_trained_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "x").unwrap();
    let (id, path) = stage(&store, "00000000000000b1");
    let claim = store.claim(&id).unwrap().unwrap();
    store.commit(&record(id.as_str()), None, &claim).unwrap();
    drop(claim);
    // `run --retry-failed`: the failed record is replaced.
    let model = staged(&store, &id, b"weights");
    let ok = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    assert!(store.commit(&ok, Some(model), &claim).unwrap());
    drop(claim);
    let committed = std::fs::read(&path).unwrap();
    // A trained stage's record stands, even against a run that holds the store (on a `nolock`
    // mount, a task of another machine may have committed it).
    let model = staged(&store, &id, b"other weights");
    let other = trained(&id, &model);
    let claim = store.claim(&id).unwrap().unwrap();
    assert!(!store.commit(&other, Some(model), &claim).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), committed);
}
