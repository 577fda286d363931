//! The object store's sha256 paths on one big file, one action per run, for scripts/bench to
//! time against `sha256sum` on the same file (each run is a process of its own on both sides,
//! so both pay the same start-up).
//!
//! ```sh
//! cargo build --release --example obj-bench
//! obj-bench sha FILE                 # prints the sha256 (Storage's streaming hasher)
//! obj-bench verify FILE SHA          # Storage::verify_file: what an update's Check::Rehash does
//! obj-bench write FILE SHA STORAGE   # Storage::object_writer: hash while storing, fsync,
//!                                    # rename, dir fsync (what PUT /objects does), then removes
//!                                    # the object again
//! ```
//! Exits non-zero on any error or checksum mismatch, so a wrong result is never timed.
use pantavisor::storage::fs::RealFs;
use pantavisor::storage::objects::sha256_reader;
use pantavisor::storage::Storage;
use std::io::Read;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        ["sha", file] => std::fs::File::open(file)
            .and_then(|mut f| sha256_reader(&mut f))
            .map(|sha| println!("{sha}"))
            .map_err(|e| format!("{file}: {e}")),
        ["verify", file, sha] => Storage::new(&RealFs, "/nonexistent")
            .verify_file(Path::new(file), sha)
            .map_err(|e| e.to_string()),
        ["write", file, sha, storage] => write(file, sha, storage),
        _ => Err("usage: obj-bench sha FILE | verify FILE SHA | write FILE SHA STORAGE".into()),
    };
    if let Err(e) = r {
        eprintln!("obj-bench: {e}");
        std::process::exit(1);
    }
}

fn write(file: &str, sha: &str, storage: &str) -> Result<(), String> {
    let st = Storage::new(&RealFs, storage);
    let mut w = st.object_writer(sha).map_err(|e| e.to_string())?;
    let mut f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    // the chunk size pv-ctrl's PUT /objects hands to the writer is what the socket gives;
    // 64 KiB is what sha256_reader uses for the verify path
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("{file}: {e}"))?;
        if n == 0 {
            break;
        }
        w.write(buf.get(..n).unwrap_or_default())
            .map_err(|e| e.to_string())?;
    }
    let dst = w.finish().map_err(|e| e.to_string())?;
    std::fs::remove_file(&dst).map_err(|e| format!("{}: {e}", dst.display()))
}
