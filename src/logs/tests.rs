use super::tree::{clean, format_capped};
use super::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "pv-logs-{}-{name}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+w")
            .arg(&self.0)
            .status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path, outputs: u16, max: u64) -> LogConfig {
    let mut c = LogConfig::new(dir, "7");
    c.outputs = Outputs(outputs | Outputs::UPDATE);
    c.level = Level::Info;
    c.max_size = MaxSize::Bytes(max);
    c
}

const FT: u16 = Outputs::FILETREE;
const SF: u16 = Outputs::SINGLEFILE;

fn rec(level: Level, msg: &str) -> Record {
    Record::new(level, 42, "test", msg)
}

/// Bytes in regular files under `p`, symlinks not followed.
fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = fs::read_dir(p) else { return 0 };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            total += dir_size(&e.path());
        } else if ft.is_file() {
            total += e.metadata().unwrap().len();
        }
    }
    total
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "gzip -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p).unwrap()
}

#[test]
fn line_formats() {
    let r = Record::new(Level::Info, 42, "init", "hello");
    assert_eq!(r.text(), "[pantavisor] 42 INFO\t -- [init]: hello\n");
    assert_eq!(
        r.json(),
        "{\"tsec\":42,\"tnano\":0,\"platform\":\"pantavisor\",\"lvl\":\"INFO\",\"src\":\"init\",\"msg\":\"hello\"}\n"
    );
    let r = Record::new(Level::Error, 7, "a\"b", "say \"hi\"\tand\\ \u{1}go\n");
    assert_eq!(
        r.text(),
        "[pantavisor] 7 ERROR\t -- [a\"b]: say \"hi\"\tand\\ \u{1}go\n"
    );
    assert_eq!(
        r.json(),
        "{\"tsec\":7,\"tnano\":0,\"platform\":\"pantavisor\",\"lvl\":\"ERROR\",\"src\":\"a\\\"b\",\"msg\":\"say \\\"hi\\\"\\tand\\\\ \\u0001go\"}\n"
    );
    for (l, n) in [
        (Level::Fatal, "FATAL"),
        (Level::Warn, "WARN"),
        (Level::Debug, "DEBUG"),
        (Level::Trace, "TRACE"),
    ] {
        assert!(Record::new(l, 0, "s", "m")
            .text()
            .contains(&format!(" {n}\t -- ")));
    }
}

#[test]
fn sinks_write_their_files() {
    let t = Tmp::new("sinks");
    let mut tree = LogTree::new(&config(t.path(), FT | SF, 1 << 20));
    tree.log(&rec(Level::Info, "one"));
    tree.log(&rec(Level::Warn, "two"));
    assert_eq!(
        read(t.path().join("7/pantavisor/pantavisor.log")),
        "[pantavisor] 42 INFO\t -- [test]: one\n[pantavisor] 42 WARN\t -- [test]: two\n"
    );
    assert_eq!(
        read(t.path().join("7/pv.log")),
        "{\"tsec\":42,\"tnano\":0,\"platform\":\"pantavisor\",\"lvl\":\"INFO\",\"src\":\"test\",\"msg\":\"one\"}\n\
         {\"tsec\":42,\"tnano\":0,\"platform\":\"pantavisor\",\"lvl\":\"WARN\",\"src\":\"test\",\"msg\":\"two\"}\n"
    );
    assert_eq!(tree.dropped(), 0);

    // stdout and nullsink write no file
    for o in [Outputs::STDOUT_CONTAINERS, Outputs::NULLSINK] {
        let t = Tmp::new("nofile");
        let mut tree = LogTree::new(&config(t.path(), o, 1 << 20));
        tree.log(&rec(Level::Info, "x"));
        assert!(names(t.path()).is_empty());
    }
    // a revision of local updates nests
    let t = Tmp::new("locals");
    let mut c = config(t.path(), FT, 1 << 20);
    c.rev = "locals/up-1".into();
    let mut tree = LogTree::new(&c);
    tree.log(&rec(Level::Info, "x"));
    assert!(t
        .path()
        .join("locals/up-1/pantavisor/pantavisor.log")
        .is_file());
}

#[test]
fn level_filtering() {
    let t = Tmp::new("level");
    let mut c = config(t.path(), FT, 1 << 20);
    c.level = Level::Warn;
    let mut tree = LogTree::new(&c);
    for l in [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ] {
        tree.log(&rec(l, l.name()));
    }
    tree.set_level(Level::Debug);
    tree.log(&rec(Level::Debug, "now"));
    tree.log(&rec(Level::Trace, "still not"));
    let text = read(t.path().join("7/pantavisor/pantavisor.log"));
    let levels: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').nth(2).unwrap().trim_end_matches("\t"))
        .collect();
    assert_eq!(levels, ["WARN", "ERROR", "FATAL", "DEBUG"]);
}

#[test]
fn limits_follow_the_factors() {
    assert_eq!(
        Limits::new(1000, 5, 4),
        Limits {
            max: 1000,
            high: 900,
            low: 750,
            per_file: 50
        }
    );
    // zero factors are taken as 1, never a division by zero
    let l = Limits::new(1000, 0, 0);
    assert_eq!((l.low, l.per_file), (0, 1000));
    assert_eq!(Limits::new(0, 5, 4).per_file, 1);
}

#[test]
fn crc32_known_value() {
    assert_eq!(crc32_update(0, b"123456789"), 0xCBF4_3926);
    let split = crc32_update(crc32_update(0, b"12345"), b"6789");
    assert_eq!(split, 0xCBF4_3926);
    assert_eq!(crc32_update(0, b""), 0);
}

#[test]
fn gzip_output_is_read_by_gzip() {
    let t = Tmp::new("gzip");
    let mut big = Vec::with_capacity(200_000);
    let mut x: u32 = 1;
    for _ in 0..200_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 24) as u8);
    }
    let inputs: [&[u8]; 4] = [b"", b"hello\n", &big, &big[..65535]];
    for (i, input) in inputs.iter().enumerate() {
        let mut out = Vec::new();
        let n = gzip_stored(&mut &input[..], &mut out).unwrap();
        assert_eq!(n, input.len() as u64);
        // stored, not compressed: 10 header + 8 trailer + 5 per block + the final block
        assert!(out.len() >= input.len() + 23);
        let p = t.path().join(format!("{i}.gz"));
        fs::write(&p, &out).unwrap();
        assert_eq!(gunzip(&p), *input, "input {i}");
        let st = Command::new("gzip").arg("-t").arg(&p).status().unwrap();
        assert!(st.success());
    }
}

/// 41-byte lines: `[pantavisor] 42 INFO\t -- [test]: line NN\n`
fn line(n: usize) -> Record {
    rec(Level::Info, &format!("line {n:02}"))
}

#[test]
fn rotation_numbers_archives_in_sequence() {
    let t = Tmp::new("rotate");
    // M 4000: gap 1000, per-file 200 (4 lines of 41 bytes), high 3600
    let mut tree = LogTree::new(&config(t.path(), FT, 4000));
    assert_eq!(tree.limits().per_file, 200);
    assert_eq!(line(0).text().len(), 41);
    for n in 0..12 {
        tree.log(&line(n));
    }
    let d = t.path().join("7/pantavisor");
    assert_eq!(
        names(&d),
        [
            "pantavisor.log",
            "pantavisor.log.1.gz",
            "pantavisor.log.2.gz"
        ]
    );
    let lines = |r: std::ops::Range<usize>| -> Vec<u8> {
        r.map(|n| line(n).text().to_string())
            .collect::<String>()
            .into_bytes()
    };
    assert_eq!(gunzip(&d.join("pantavisor.log.1.gz")), lines(0..4));
    assert_eq!(gunzip(&d.join("pantavisor.log.2.gz")), lines(4..8));
    assert_eq!(fs::read(d.join("pantavisor.log")).unwrap(), lines(8..12));

    // a new writer (a reboot) continues the sequence after the highest number
    drop(tree);
    fs::remove_file(d.join("pantavisor.log.1.gz")).unwrap();
    let mut tree = LogTree::new(&config(t.path(), FT, 4000));
    for n in 12..16 {
        tree.log(&line(n));
    }
    assert_eq!(
        names(&d),
        [
            "pantavisor.log",
            "pantavisor.log.2.gz",
            "pantavisor.log.3.gz"
        ]
    );
    assert_eq!(gunzip(&d.join("pantavisor.log.3.gz")), lines(8..12));
    assert_eq!(fs::read(d.join("pantavisor.log")).unwrap(), lines(12..16));
}

fn put(path: &Path, len: usize, age_secs: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![b'x'; len]).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
        .unwrap();
}

#[test]
fn cleanup_takes_the_oldest_archives_of_the_largest_directory_first() {
    let t = Tmp::new("clean");
    let d = t.path();
    // revision 1: 3100 bytes; revision 2: 2500 bytes, its archives older than any of 1's
    put(&d.join("1/pantavisor/pantavisor.log"), 100, 0);
    put(&d.join("1/pantavisor/pantavisor.log.1.gz"), 1000, 300);
    put(&d.join("1/pantavisor/pantavisor.log.2.gz"), 1000, 200);
    put(&d.join("1/pantavisor/pantavisor.log.3.gz"), 1000, 100);
    put(&d.join("2/web/lxc/console.log"), 500, 0);
    put(&d.join("2/web/lxc/console.log.1.gz"), 1000, 2000);
    put(&d.join("2/web/lxc/console.log.2.gz"), 1000, 1000);
    std::os::unix::fs::symlink("2", d.join("current")).unwrap();
    assert_eq!(dir_size(d), 5600);

    // M 6000: high 5400, low 4500, per-file 300
    let l = Limits::new(6000, 5, 4);
    let left = clean(d, &l);
    // 1 was the largest: its oldest went (4600, 1 now 2100); then 2 (2500) was: its oldest
    // went, and 3600 < 4500 stops it
    assert_eq!(left, 3600);
    assert_eq!(dir_size(d), 3600);
    assert_eq!(
        names(&d.join("1/pantavisor")),
        [
            "pantavisor.log",
            "pantavisor.log.2.gz",
            "pantavisor.log.3.gz"
        ]
    );
    assert_eq!(
        names(&d.join("2/web/lxc")),
        ["console.log", "console.log.2.gz"]
    );
    // below the high watermark nothing is deleted
    assert_eq!(clean(d, &Limits::new(4000, 1, 4)), 3600);
    assert_eq!(dir_size(d), 3600);
    // active files are never deleted, even far above the budget
    let tiny = Limits {
        max: 200,
        high: 180,
        low: 100,
        per_file: 1000,
    };
    assert_eq!(clean(d, &tiny), 600);
    assert_eq!(names(&d.join("1/pantavisor")), ["pantavisor.log"]);
    assert_eq!(names(&d.join("2/web/lxc")), ["console.log"]);
    assert!(d.join("current").symlink_metadata().is_ok());
}

#[test]
fn walk_finishes_interrupted_rotations_and_archives_oversized_files_of_others() {
    let t = Tmp::new("walk");
    let d = t.path();
    // M 4000: per-file 200; a file written by someone else at 2.5 times that
    let console = d.join("7/web/lxc/console.log");
    put(&console, 500, 0);
    let pending = d.join("7/pantavisor/pantavisor.log.3.gz.pending");
    put(&pending, 150, 0);
    put(&d.join("7/pantavisor/pantavisor.log.2.gz.tmp"), 10, 0);
    let mut tree = LogTree::new(&config(t.path(), Outputs::NULLSINK, 4000));
    tree.log(&rec(Level::Info, "walk now")); // the first message walks
    assert_eq!(fs::metadata(&console).unwrap().len(), 0);
    assert_eq!(
        gunzip(&d.join("7/web/lxc/console.log.1.gz")),
        vec![b'x'; 500]
    );
    assert_eq!(names(&d.join("7/pantavisor")), ["pantavisor.log.3.gz"]);
    assert_eq!(
        gunzip(&d.join("7/pantavisor/pantavisor.log.3.gz")),
        vec![b'x'; 150]
    );
}

#[test]
fn ten_thousand_lines_stay_within_a_tiny_budget() {
    let t = Tmp::new("tiny");
    let m = 16 * 1024;
    let mut tree = LogTree::new(&config(t.path(), FT | SF, m));
    let mut peak = 0;
    for n in 0..10_000 {
        tree.log(&rec(
            Level::Info,
            &format!("message {n} {}", "y".repeat(n % 97)),
        ));
        peak = peak.max(dir_size(t.path()));
    }
    peak = peak.max(dir_size(t.path()));
    eprintln!("budget {m}, limits {:?}, peak {peak}", tree.limits());
    assert!(peak <= m, "peak {peak} > budget {m}");
    // the active files are there and end with the last record
    let pv = read(t.path().join("7/pantavisor/pantavisor.log"));
    assert!(pv.ends_with(&format!("message 9999 {}\n", "y".repeat(9999 % 97))));
    let single = read(t.path().join("7/pv.log"));
    assert!(single.contains("message 9999"));
    // archives were made and the oldest deleted
    let archives = names(&t.path().join("7/pantavisor"));
    assert!(archives.len() > 1, "{archives:?}");
    assert!(!archives.contains(&"pantavisor.log.1.gz".to_string()));
    assert!(archives.iter().all(|n| !n.ends_with(".pending")));
    assert_eq!(tree.dropped(), 0);
}

#[test]
fn update_capture_keeps_only_errors_and_renames_on_stop() {
    let t = Tmp::new("capture");
    let logs = t.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let pv = t.path().join("trails/5/.pv");
    fs::create_dir_all(&pv).unwrap();
    let mut c = config(&logs, FT, 1 << 20);
    c.level = Level::Fatal; // errors are captured even when the level hides them
    let mut tree = LogTree::new(&c);
    tree.log(&rec(Level::Error, "before"));
    tree.start_update_capture(&pv);
    assert!(tree.capturing());
    for l in [
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
        Level::Debug,
    ] {
        tree.log(&rec(l, l.name()));
    }
    let want = format!(
        "{}{}",
        rec(Level::Error, "ERROR").json(),
        rec(Level::Fatal, "FATAL").json()
    );
    assert_eq!(read(pv.join("logs.tmp")), want);
    assert!(!pv.join("logs").exists());
    tree.stop_update_capture();
    assert!(!pv.join("logs.tmp").exists());
    assert_eq!(read(pv.join("logs")), want);
    tree.log(&rec(Level::Error, "after"));
    assert_eq!(read(pv.join("logs")), want);
    assert_eq!(update_logs_excerpt(&pv).unwrap(), want);
    // the level still decides what the log tree gets
    assert_eq!(
        read(logs.join("7/pantavisor/pantavisor.log")),
        rec(Level::Fatal, "FATAL").text()
    );
    // no error: no logs file, no excerpt
    let quiet = t.path().join("trails/6/.pv");
    fs::create_dir_all(&quiet).unwrap();
    tree.start_update_capture(&quiet);
    tree.log(&rec(Level::Warn, "fine"));
    tree.stop_update_capture();
    assert!(names(&quiet).is_empty());
    assert_eq!(update_logs_excerpt(&quiet), None);
}

#[test]
fn excerpt_is_4_kib_cut_at_a_line_boundary() {
    let t = Tmp::new("excerpt");
    let one = format!("{{\"msg\":\"{}\"}}\n", "e".repeat(79)); // 90 bytes
    assert_eq!(one.len(), 90);
    fs::write(t.path().join("logs"), one.repeat(100)).unwrap();
    let e = update_logs_excerpt(t.path()).unwrap();
    assert_eq!(e.len(), 45 * 90); // 4050; a 46th line would make 4140
    assert_eq!(e, one.repeat(45));
    // a first line longer than 4 KiB leaves nothing whole to show
    fs::write(t.path().join("logs"), "z".repeat(5000) + "\n").unwrap();
    assert_eq!(update_logs_excerpt(t.path()), None);
    // exactly 4096 bytes, newline last
    let exact = "q".repeat(4095) + "\n";
    fs::write(t.path().join("logs"), exact.clone() + "more\n").unwrap();
    assert_eq!(update_logs_excerpt(t.path()).unwrap(), exact);
    assert_eq!(update_logs_excerpt(&t.path().join("nope")), None);
}

#[test]
fn vanished_log_dir_drops_lines_and_recovers() {
    let t = Tmp::new("vanish");
    let logs = t.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let mut tree = LogTree::new(&config(&logs, FT, 1 << 20));
    tree.log(&rec(Level::Info, "first"));
    fs::remove_dir_all(&logs).unwrap();
    for n in 0..5 {
        tree.log(&rec(Level::Info, &format!("lost {n}")));
    }
    assert_eq!(tree.dropped(), 5);
    assert!(!logs.exists(), "the log directory itself is never created");
    fs::create_dir(&logs).unwrap();
    tree.log(&rec(Level::Info, "back"));
    assert_eq!(tree.dropped(), 5);
    assert_eq!(
        read(logs.join("7/pantavisor/pantavisor.log")),
        "[pantavisor] 42 INFO\t -- [test]: back\n\
         [pantavisor] 42 WARN\t -- [logs]: 5 log lines dropped (storage unwritable)\n"
    );
}

#[test]
fn unwritable_places_drop_lines() {
    // a revision directory that is a file: no directory can be made under it, root or not
    let t = Tmp::new("notdir");
    fs::write(t.path().join("7"), "").unwrap();
    let mut tree = LogTree::new(&config(t.path(), FT | SF, 1 << 20));
    for _ in 0..3 {
        tree.log(&rec(Level::Info, "x"));
    }
    assert_eq!(tree.dropped(), 6, "3 lines, 2 sinks");

    // a read-only log directory (meaningless as root, which writes anyway)
    let t = Tmp::new("ro");
    let st = Command::new("chmod")
        .arg("555")
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success());
    if fs::write(t.path().join("probe"), "").is_err() {
        let mut tree = LogTree::new(&config(t.path(), FT, 1 << 20));
        tree.log(&rec(Level::Info, "x"));
        tree.log(&rec(Level::Info, "y"));
        assert_eq!(tree.dropped(), 2);
    }
}

#[test]
fn full_disk_drops_lines_and_recovers() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let t = Tmp::new("full");
    let d = t.path().join("7/pantavisor");
    fs::create_dir_all(&d).unwrap();
    // every write to /dev/full fails with ENOSPC
    std::os::unix::fs::symlink("/dev/full", d.join("pantavisor.log")).unwrap();
    let mut tree = LogTree::new(&config(t.path(), FT, 1 << 20));
    for _ in 0..3 {
        tree.log(&rec(Level::Info, "x"));
    }
    assert_eq!(tree.dropped(), 3);
    // space comes back
    fs::remove_file(d.join("pantavisor.log")).unwrap();
    tree.log(&rec(Level::Info, "y"));
    assert_eq!(
        read(d.join("pantavisor.log")),
        "[pantavisor] 42 INFO\t -- [test]: y\n\
         [pantavisor] 42 WARN\t -- [logs]: 3 log lines dropped (storage unwritable)\n"
    );
}

#[test]
fn messages_are_capped() {
    let big = "x".repeat(10_000);
    let r = rec(Level::Info, &big);
    let prefix = "[pantavisor] 42 INFO\t -- [test]: ";
    assert_eq!(
        r.text().len(),
        prefix.len() + MSG_CAP + " [truncated]".len() + 1
    );
    assert!(r.text().ends_with("x [truncated]\n"));
    let f = format_capped(format_args!("{big}{big}"));
    assert_eq!(f.len(), MSG_CAP + " [truncated]".len());
    // cut on a character boundary
    let wide = "é".repeat(3000);
    let f = format_capped(format_args!("a{wide}"));
    assert!(f.len() <= MSG_CAP + 12 && f.ends_with("é [truncated]"));
    // short ones are untouched
    assert_eq!(format_capped(format_args!("{}-{}", 1, "b")), "1-b");
}

#[test]
fn other_sources_get_their_own_files() {
    let t = Tmp::new("append");
    let mut tree = LogTree::new(&config(t.path(), FT | SF, 1 << 20));
    assert!(tree.append(5, "web", "lxc/console.log", b"hello\nworld\n"));
    assert!(tree.append(5, "web", "/var/log/messages", b"partial"));
    assert!(tree.append(5, "pantavisor", "mount-out", b"ok\n"));
    assert_eq!(
        read(t.path().join("7/web/lxc/console.log")),
        "hello\nworld\n"
    );
    assert_eq!(read(t.path().join("7/web/var/log/messages")), "partial");
    assert_eq!(
        read(t.path().join("7/pantavisor/pantavisor.log")),
        "[pantavisor] 5 INFO\t -- [mount-out]: ok\n"
    );
    let single = read(t.path().join("7/pv.log"));
    let lines: Vec<&str> = single.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        "{\"tsec\":5,\"tnano\":0,\"platform\":\"web\",\"lvl\":\"INFO\",\"src\":\"lxc/console.log\",\"msg\":\"hello\"}"
    );
    for (p, s) in [
        ("web", "../x"),
        ("web", "a/../../x"),
        ("web", ""),
        ("web", "/"),
        ("..", "x"),
        ("", "x"),
        ("a/b", "x"),
    ] {
        assert!(!tree.append(5, p, s, b"no"), "{p:?} {s:?}");
        assert_eq!(tree.path_for("7", p, s), None, "{p:?} {s:?}");
    }
    assert_eq!(
        tree.path_for("locals/x", "web", "/var/log/messages"),
        Some(t.path().join("locals/x/web/var/log/messages"))
    );
    assert_eq!(tree.path_for("../x", "web", "lxc/console.log"), None);
    assert_eq!(names(t.path()), ["7"]);
    assert_eq!(names(&t.path().join("7")), ["pantavisor", "pv.log", "web"]);
}

#[test]
fn outputs_mask_is_upstreams() {
    let bits = [
        ("nullsink", Outputs::NULLSINK),
        ("singlefile", Outputs::SINGLEFILE),
        ("filetree", Outputs::FILETREE),
        ("stdout", Outputs::STDOUT),
        ("stdout.containers", Outputs::STDOUT_CONTAINERS),
        ("stdout.pantavisor", Outputs::STDOUT_PANTAVISOR),
        ("stdout_direct", Outputs::STDOUT_DIRECT),
    ];
    for (name, bit) in bits {
        assert_eq!(crate::config::log_outputs_mask(name), bit | Outputs::UPDATE);
    }
    let o = Outputs(crate::config::log_outputs_mask(
        "filetree,stdout.containers",
    ));
    assert!(o.has(Outputs::FILETREE) && !o.has(Outputs::SINGLEFILE));
    assert!(o.stdout_for("web") && !o.stdout_for(PANTAVISOR));
    assert!(Outputs(Outputs::STDOUT).stdout_for(PANTAVISOR));
    assert_eq!(
        Outputs::default(),
        Outputs(Outputs::FILETREE | Outputs::UPDATE)
    );
}

#[test]
fn automatic_budget_comes_from_the_partition() {
    let t = Tmp::new("budget");
    assert_eq!(budget(t.path(), MaxSize::Bytes(1234)), Some(1234));
    let fs = crate::sys::logsys::fs_size(t.path()).unwrap();
    assert!(fs.total > 0);
    let auto = budget(t.path(), MaxSize::Bytes(0)).unwrap();
    let pct = if fs.tmpfs { 100 } else { 10 };
    assert_eq!(auto, fs.total / 100 * pct + fs.total % 100 * pct / 100);
    assert_eq!(budget(t.path(), MaxSize::Percent(50)), Some(fs.total / 2));
    // a log directory not there yet is measured on its parent (whose total may move a
    // little between two calls on an overlay file system)
    let parent = budget(&t.path().join("logs"), MaxSize::Bytes(0)).unwrap();
    assert!(parent.abs_diff(auto) < auto / 100, "{parent} {auto}");
    if Path::new("/dev/shm").is_dir() {
        let shm = crate::sys::logsys::fs_size(Path::new("/dev/shm")).unwrap();
        if shm.tmpfs {
            assert_eq!(
                budget(Path::new("/dev/shm"), MaxSize::Bytes(0)),
                Some(shm.total)
            );
        }
    }
    assert!(crate::sys::logsys::boottime_secs().is_ok());
}

#[test]
fn a_poisoned_lock_is_recovered() {
    let m = std::sync::Arc::new(std::sync::Mutex::new(5));
    let m2 = m.clone();
    let _ = std::thread::spawn(move || {
        let _g = m2.lock().unwrap();
        panic!("poison it");
    })
    .join();
    assert!(m.is_poisoned());
    assert_eq!(*lock(&m), 5);
}

/// The tests that install the global logger take turns.
static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The global wrapper: several threads, capture, other sources. Records of other tests
/// running at the same time may land in the same files, so only this test's are counted.
#[test]
fn global_logger_from_several_threads() {
    let _g = lock(&GLOBAL);
    let t = Tmp::new("global");
    let logs = t.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let pv = t.path().join("pv");
    fs::create_dir(&pv).unwrap();
    // large enough for no rotation: every line stays in the active files
    let mut c = config(&logs, FT | SF, 64 << 20);
    c.rev = "3".into();
    init(c);
    start_update_capture(&pv);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            std::thread::spawn(move || {
                for i in 0..500 {
                    crate::pvlog!(Info, "global-test", "thread {n} line {i}");
                }
                crate::pvlog!(Error, "global-test", "thread {n} failed");
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    append("web", "lxc/console.log", b"from the container\n");
    stop_update_capture();
    let path = container_log_path("3", "web", "lxc/console.log").unwrap();
    assert_eq!(path, logs.join("3/web/lxc/console.log"));
    assert_eq!(container_log_path("3", "..", "x"), None);
    let dropped = dropped_lines();
    assert!(settle(10_000));
    uninstall();

    assert_eq!(read(&path), "from the container\n");
    let text = read(logs.join("3/pantavisor/pantavisor.log"));
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[global-test]"))
        .collect();
    assert_eq!(mine.len(), 2004);
    for l in &mine {
        assert!(l.starts_with("[pantavisor] "), "{l}");
        assert!(
            l.contains(" INFO\t -- [global-test]: thread ")
                || l.contains(" ERROR\t -- [global-test]: thread "),
            "{l}"
        );
    }
    let single = read(logs.join("3/pv.log"));
    assert_eq!(single.matches("\"src\":\"global-test\"").count(), 2004);
    let captured = update_logs_excerpt(&pv).unwrap();
    assert_eq!(captured.matches("\"src\":\"global-test\"").count(), 4);
    assert_eq!(dropped, 0);
    assert_eq!(container_log_path("3", "web", "x"), None, "uninstalled");
}

/// Rotation through the global logger: the caller renames the full file aside and returns;
/// compressing it is the archiver's, on its own thread. The test holds the archiver at its
/// gate, so a caller that did the work itself would find no job to do -- or hang.
#[test]
fn a_rotation_is_archived_off_the_calling_thread_and_loses_no_line() {
    let _g = lock(&GLOBAL);
    let t = Tmp::new("archiver");
    let logs = t.path().join("logs");
    fs::create_dir(&logs).unwrap();
    // M 64 KiB: a rotation every ~3 KiB, no archive deleted for the lines below
    let mut c = config(&logs, FT, 64 << 10);
    c.rev = "4".into();
    init(c);
    let d = logs.join("4/pantavisor");
    let gate = lock(&TEST_GATE);
    let mut slowest = Duration::ZERO;
    for i in 0..400 {
        let t0 = std::time::Instant::now();
        crate::pvlog!(Info, "archiver-test", "line {i:04} of a slow rotation");
        slowest = slowest.max(t0.elapsed());
    }
    let held = names(&d);
    assert!(
        held.iter().any(|n| n.ends_with(".gz.pending")),
        "rotated: {held:?}"
    );
    assert!(
        !held.iter().any(|n| n.ends_with(".gz")),
        "nothing compressed while the archiver is held: {held:?}"
    );
    assert!(archiving());
    assert!(
        slowest < Duration::from_millis(500),
        "a log call took {slowest:?}"
    );
    drop(gate);
    assert!(settle(10_000), "the archiver finished its queue");
    uninstall();
    let all = names(&d);
    assert!(!all.iter().any(|n| n.contains("pending")), "{all:?}");
    // every line once and in order: the archives by number, then the active file
    let mut archives: Vec<(u64, PathBuf)> = all
        .iter()
        .filter_map(|n| {
            let seq = n.strip_prefix("pantavisor.log.")?.strip_suffix(".gz")?;
            Some((seq.parse().ok()?, d.join(n)))
        })
        .collect();
    archives.sort();
    assert!(archives.len() >= 5, "{all:?}");
    let mut text = Vec::new();
    for (_, p) in &archives {
        text.extend(gunzip(p));
    }
    text.extend(fs::read(d.join("pantavisor.log")).unwrap());
    let text = String::from_utf8(text).unwrap();
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[archiver-test]"))
        .collect();
    let want: Vec<String> = (0..400)
        .map(|i| format!("line {i:04} of a slow rotation"))
        .collect();
    assert_eq!(mine.len(), 400);
    for (l, w) in mine.iter().zip(&want) {
        assert!(l.ends_with(w.as_str()), "{l} != {w}");
    }
}

/// The captured logs of an update directory as its progress shows them.
fn update_logs_excerpt(pv_dir: &Path) -> Option<String> {
    logs_excerpt(&std::fs::read(pv_dir.join("logs")).ok()?)
}
