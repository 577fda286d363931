//! A minimal mkfs for the ext4 file system of a dm-crypt disk, so that the device needs no
//! `mke2fs` (the initramfs holds only this binary). It makes what upstream's crypt script asks
//! `mkfs.ext4 -b 1024` for, reduced to the features the kernel and e2fsck need: 1 KiB blocks,
//! a journal (a hard reset is replayed at mount: nothing runs fsck), extents, file types,
//! sparse superblock backups, large files, dir_index and extended attributes; no checksums,
//! no flex_bg, no resize inode. The layout is a pure function of the size; every byte the
//! file system reads is written (through dm-crypt an unwritten block reads as noise).
use std::io;
use std::os::unix::fs::FileExt;

pub const BLOCK: u32 = 1024;
const BLOCKS_PER_GROUP: u32 = 8 * BLOCK;
const INODE_SIZE: u32 = 256;
const INODES_PER_BLOCK: u32 = BLOCK / INODE_SIZE;
const FIRST_INO: u32 = 11;
const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LPF_INO: u32 = 11;
/// The largest journal made: 4 MiB in one extent inside group 0 (mke2fs picks more for big
/// file systems; any size from 1024 blocks on is valid).
const MAX_JOURNAL: u32 = 4096;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_EXT_ATTR: u32 = 0x8;
const COMPAT_DIR_INDEX: u32 = 0x20;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const EXTENTS_FL: u32 = 0x80000;
/// `EXT2_FLAGS_SIGNED_HASH`: what mke2fs records where `char` is signed (x86); the kernel
/// reads the flag, so either is correct once recorded.
const FLAGS_SIGNED_HASH: u32 = 0x1;

/// Where everything goes, from the size alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// File system blocks (the last partial KiB of the device is left out).
    pub blocks: u32,
    pub groups: u32,
    pub inodes_per_group: u32,
    pub itable_blocks: u32,
    pub gdt_blocks: u32,
    pub journal_blocks: u32,
}

/// Group `g` holds a superblock backup (sparse_super: 0, 1 and powers of 3, 5, 7).
fn has_super(g: u32) -> bool {
    if g <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&p| {
        let mut n = g;
        while n.is_multiple_of(p) {
            n /= p;
        }
        n == 1
    })
}

impl Layout {
    /// The layout for a device of `bytes`; an error for one too small to hold a journal.
    pub fn new(bytes: u64) -> Result<Layout, String> {
        let mut blocks = u32::try_from(bytes / BLOCK as u64)
            .map_err(|_| format!("{bytes} bytes: too large for 1 KiB blocks"))?;
        if blocks < 2048 {
            return Err(format!(
                "{bytes} bytes: too small for an ext4 file system with a journal (2 MiB at least)"
            ));
        }
        // mke2fs' "small" type below 512 MiB: an inode per 4 KiB, else per 16 KiB
        let ratio: u64 = if bytes < 512 << 20 { 4096 } else { 16384 };
        loop {
            let groups = (blocks - 1).div_ceil(BLOCKS_PER_GROUP);
            let gdt_blocks = (groups * 32).div_ceil(BLOCK);
            let inodes = (blocks as u64 * BLOCK as u64 / ratio).max(16) as u32;
            let ipg = inodes
                .div_ceil(groups)
                .next_multiple_of(8)
                .min(BLOCKS_PER_GROUP);
            let itable_blocks = ipg / INODES_PER_BLOCK;
            let l = Layout {
                blocks,
                groups,
                inodes_per_group: ipg,
                itable_blocks,
                gdt_blocks,
                journal_blocks: if blocks < 32768 { 1024 } else { MAX_JOURNAL },
            };
            // a last group too small for its own metadata is dropped, as mke2fs does
            let last = groups - 1;
            if l.group_blocks(last) < l.overhead(last) + 50 {
                blocks = l.group_start(last);
                continue;
            }
            if l.first_free(0) + 2 + l.journal_blocks > l.group_start(0) + l.group_blocks(0) {
                return Err(format!(
                    "{bytes} bytes: no room for the journal in the first group"
                ));
            }
            return Ok(l);
        }
    }

    fn group_start(&self, g: u32) -> u32 {
        1 + g * BLOCKS_PER_GROUP
    }

    fn group_blocks(&self, g: u32) -> u32 {
        (self.blocks - self.group_start(g)).min(BLOCKS_PER_GROUP)
    }

    /// Superblock and descriptor copies, bitmaps and inode table of group `g`.
    fn overhead(&self, g: u32) -> u32 {
        let sb = if has_super(g) { 1 + self.gdt_blocks } else { 0 };
        sb + 2 + self.itable_blocks
    }

    fn block_bitmap(&self, g: u32) -> u32 {
        self.group_start(g) + self.overhead(g) - 2 - self.itable_blocks
    }

    fn inode_table(&self, g: u32) -> u32 {
        self.block_bitmap(g) + 2
    }

    fn first_free(&self, g: u32) -> u32 {
        self.group_start(g) + self.overhead(g)
    }

    fn root_block(&self) -> u32 {
        self.first_free(0)
    }

    fn lpf_block(&self) -> u32 {
        self.first_free(0) + 1
    }

    fn journal_start(&self) -> u32 {
        self.first_free(0) + 2
    }

    /// Blocks in use in group `g` (all at its start).
    fn used(&self, g: u32) -> u32 {
        self.overhead(g) + if g == 0 { 2 + self.journal_blocks } else { 0 }
    }

    fn free_blocks(&self) -> u32 {
        (0..self.groups)
            .map(|g| self.group_blocks(g) - self.used(g))
            .sum()
    }

    fn inodes(&self) -> u32 {
        self.inodes_per_group * self.groups
    }
}

/// What makes one file system unlike another.
pub struct Ids {
    pub uuid: [u8; 16],
    pub hash_seed: [u8; 16],
    /// Seconds since the epoch, for the time stamps.
    pub now: u32,
}

/// One write of the file system: bytes at a block, or a run of zero blocks.
#[derive(Debug)]
pub enum Chunk {
    Data(u32, Vec<u8>),
    Zero(u32, u32),
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn superblock(l: &Layout, ids: &Ids, group: u32, jnl: &[u8; 60]) -> Vec<u8> {
    let mut s = vec![0u8; BLOCK as usize];
    put32(&mut s, 0x00, l.inodes());
    put32(&mut s, 0x04, l.blocks);
    put32(&mut s, 0x08, l.blocks / 20);
    put32(&mut s, 0x0C, l.free_blocks());
    put32(&mut s, 0x10, l.inodes() - FIRST_INO);
    put32(&mut s, 0x14, 1); // first data block (1 KiB blocks)
    put32(&mut s, 0x20, BLOCKS_PER_GROUP);
    put32(&mut s, 0x24, BLOCKS_PER_GROUP);
    put32(&mut s, 0x28, l.inodes_per_group);
    put32(&mut s, 0x30, ids.now);
    put16(&mut s, 0x36, 0xFFFF); // max mount count -1: no forced check
    put16(&mut s, 0x38, 0xEF53);
    put16(&mut s, 0x3A, 1); // clean
    put16(&mut s, 0x3C, 1); // errors: continue
    put32(&mut s, 0x40, ids.now);
    put32(&mut s, 0x4C, 1); // dynamic revision
    put32(&mut s, 0x54, FIRST_INO);
    put16(&mut s, 0x58, INODE_SIZE as u16);
    put16(&mut s, 0x5A, group as u16);
    put32(
        &mut s,
        0x5C,
        COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX,
    );
    put32(&mut s, 0x60, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS);
    put32(
        &mut s,
        0x64,
        RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_DIR_NLINK,
    );
    s[0x68..0x78].copy_from_slice(&ids.uuid);
    put32(&mut s, 0xE0, JOURNAL_INO);
    s[0xEC..0xFC].copy_from_slice(&ids.hash_seed);
    s[0xFC] = 1; // half_md4
    s[0xFD] = 1; // s_jnl_blocks holds a copy of the journal inode's i_block
    put32(&mut s, 0x108, ids.now);
    s[0x10C..0x10C + 60].copy_from_slice(jnl);
    put32(&mut s, 0x10C + 16 * 4, l.journal_blocks * BLOCK);
    put16(&mut s, 0x15C, 32);
    put16(&mut s, 0x15E, 32);
    put32(&mut s, 0x160, FLAGS_SIGNED_HASH);
    s
}

fn descriptors(l: &Layout) -> Vec<u8> {
    let mut d = vec![0u8; (l.gdt_blocks * BLOCK) as usize];
    for g in 0..l.groups {
        let o = g as usize * 32;
        put32(&mut d, o, l.block_bitmap(g));
        put32(&mut d, o + 4, l.block_bitmap(g) + 1);
        put32(&mut d, o + 8, l.inode_table(g));
        put16(&mut d, o + 12, (l.group_blocks(g) - l.used(g)) as u16);
        let used_inodes = if g == 0 { FIRST_INO } else { 0 };
        put16(&mut d, o + 14, (l.inodes_per_group - used_inodes) as u16);
        put16(&mut d, o + 16, if g == 0 { 2 } else { 0 });
    }
    d
}

/// A bitmap block with the first `used` bits set and everything past `valid` set too (the
/// padding e2fsck checks).
fn bitmap(used: u32, valid: u32) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    for bit in (0..used).chain(valid..BLOCK * 8) {
        b[(bit / 8) as usize] |= 1 << (bit % 8);
    }
    b
}

/// i_block holding an extent tree root with one extent per (logical start, physical, len).
fn extents(runs: &[(u32, u32, u16)]) -> [u8; 60] {
    let mut b = [0u8; 60];
    put16(&mut b, 0, 0xF30A);
    put16(&mut b, 2, runs.len() as u16);
    put16(&mut b, 4, 4);
    for (i, &(logical, phys, len)) in runs.iter().enumerate() {
        let o = 12 + i * 12;
        put32(&mut b, o, logical);
        put16(&mut b, o + 4, len);
        put32(&mut b, o + 8, phys);
    }
    b
}

fn inode(mode: u16, links: u16, size: u32, i_block: &[u8; 60], now: u32) -> [u8; 256] {
    let mut n = [0u8; 256];
    put16(&mut n, 0x00, mode);
    put32(&mut n, 0x04, size);
    for t in [0x08, 0x0C, 0x10] {
        put32(&mut n, t, now);
    }
    put16(&mut n, 0x1A, links);
    put32(&mut n, 0x1C, size.div_ceil(BLOCK) * (BLOCK / 512));
    put32(&mut n, 0x20, EXTENTS_FL);
    n[0x28..0x28 + 60].copy_from_slice(i_block);
    put16(&mut n, 0x80, 32); // i_extra_isize
    put32(&mut n, 0x90, now); // crtime
    n
}

/// A directory block: (inode, name) entries, file type directory, the last one to the end.
fn dir_block(entries: &[(u32, &str)]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    let mut off = 0usize;
    for (i, (ino, name)) in entries.iter().enumerate() {
        let len = (8 + name.len()).next_multiple_of(4);
        let rec = if i + 1 == entries.len() {
            BLOCK as usize - off
        } else {
            len
        };
        put32(&mut b, off, *ino);
        put16(&mut b, off + 4, rec as u16);
        b[off + 6] = name.len() as u8;
        b[off + 7] = 2;
        b[off + 8..off + 8 + name.len()].copy_from_slice(name.as_bytes());
        off += rec;
    }
    b
}

/// The journal superblock (big-endian, jbd2 v2): empty, sequence 1.
fn journal_superblock(l: &Layout, ids: &Ids) -> Vec<u8> {
    let mut j = vec![0u8; BLOCK as usize];
    let be = |j: &mut [u8], off: usize, v: u32| j[off..off + 4].copy_from_slice(&v.to_be_bytes());
    be(&mut j, 0x00, 0xC03B_3998);
    be(&mut j, 0x04, 4); // superblock v2
    be(&mut j, 0x0C, BLOCK);
    be(&mut j, 0x10, l.journal_blocks);
    be(&mut j, 0x14, 1); // first log block
    be(&mut j, 0x18, 1); // sequence
    j[0x30..0x40].copy_from_slice(&ids.uuid);
    be(&mut j, 0x40, 1); // one user: this file system
    j
}

/// Every write of a fresh file system of layout `l`, in block order per group.
pub fn chunks(l: &Layout, ids: &Ids) -> Vec<Chunk> {
    let jnl = extents(&[(0, l.journal_start(), l.journal_blocks as u16)]);
    let gdt = descriptors(l);
    let mut out = Vec::new();
    for g in 0..l.groups {
        let start = l.group_start(g);
        if has_super(g) {
            out.push(Chunk::Data(start, superblock(l, ids, g, &jnl)));
            out.push(Chunk::Data(start + 1, gdt.clone()));
        }
        let used_inodes = if g == 0 { FIRST_INO } else { 0 };
        out.push(Chunk::Data(
            l.block_bitmap(g),
            bitmap(l.used(g), l.group_blocks(g)),
        ));
        out.push(Chunk::Data(
            l.block_bitmap(g) + 1,
            bitmap(used_inodes, l.inodes_per_group),
        ));
        out.push(Chunk::Zero(l.inode_table(g), l.itable_blocks));
    }
    let (t0, now) = (l.inode_table(0), ids.now);
    let dir = |b: u32| extents(&[(0, b, 1)]);
    // inodes 1..=12 live in the first three blocks of group 0's table
    let mut first = vec![0u8; 3 * BLOCK as usize];
    for (ino, n) in [
        (
            ROOT_INO,
            inode(0o40755, 3, BLOCK, &dir(l.root_block()), now),
        ),
        (
            JOURNAL_INO,
            inode(0o100600, 1, l.journal_blocks * BLOCK, &jnl, now),
        ),
        (LPF_INO, inode(0o40700, 2, BLOCK, &dir(l.lpf_block()), now)),
    ] {
        let o = ((ino - 1) * INODE_SIZE) as usize;
        first[o..o + INODE_SIZE as usize].copy_from_slice(&n);
    }
    out.push(Chunk::Data(t0, first));
    out.push(Chunk::Data(
        l.root_block(),
        dir_block(&[(ROOT_INO, "."), (ROOT_INO, ".."), (LPF_INO, "lost+found")]),
    ));
    out.push(Chunk::Data(
        l.lpf_block(),
        dir_block(&[(LPF_INO, "."), (ROOT_INO, "..")]),
    ));
    out.push(Chunk::Data(l.journal_start(), journal_superblock(l, ids)));
    out.push(Chunk::Zero(l.journal_start() + 1, l.journal_blocks - 1));
    out
}

/// Writes a fresh file system over the first `bytes` of `dev` (block 0, the boot block, is
/// zeroed too: nothing of what was there before may look like a file system).
pub fn mkfs(dev: &impl FileExt, bytes: u64, ids: &Ids) -> io::Result<Layout> {
    let l = Layout::new(bytes).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    let zeros = vec![0u8; 64 * BLOCK as usize];
    let write_zeros = |first: u32, n: u32| -> io::Result<()> {
        let (mut at, end) = (
            first as u64 * BLOCK as u64,
            (first + n) as u64 * BLOCK as u64,
        );
        while at < end {
            let k = (end - at).min(zeros.len() as u64) as usize;
            dev.write_all_at(&zeros[..k], at)?;
            at += k as u64;
        }
        Ok(())
    };
    write_zeros(0, 1)?;
    for c in chunks(&l, ids) {
        match c {
            Chunk::Data(b, data) => dev.write_all_at(&data, b as u64 * BLOCK as u64)?,
            Chunk::Zero(b, n) => write_zeros(b, n)?,
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_backups_follow_sparse_super() {
        let with: Vec<u32> = (0..50).filter(|&g| has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
    }

    #[test]
    fn layouts_of_upstream_sized_disks() {
        // 32 MiB: four groups of 8192 blocks (the last one 8191), 2048 inodes each
        let l = Layout::new(32 << 20).unwrap();
        assert_eq!(
            (l.blocks, l.groups, l.inodes_per_group, l.itable_blocks),
            (32768, 4, 2048, 512)
        );
        assert_eq!((l.gdt_blocks, l.journal_blocks), (1, 4096));
        assert_eq!(l.group_blocks(3), 8191);
        // group 0: sb 1, gdt 2, bitmaps 3-4, inodes 5-516, root 517, lost+found 518, journal
        assert_eq!(
            (l.block_bitmap(0), l.inode_table(0), l.root_block()),
            (3, 5, 517)
        );
        // group 2 holds no backup: bitmaps first
        assert_eq!(l.block_bitmap(2), 16385);
        // 2 MiB: one group, the smallest journal
        let l = Layout::new(2 << 20).unwrap();
        assert_eq!((l.groups, l.journal_blocks), (1, 1024));
        // a 1 GiB disk: 16384 bytes an inode
        let l = Layout::new(1 << 30).unwrap();
        assert_eq!((l.groups, l.inodes_per_group), (128, 512));
    }

    #[test]
    fn a_last_group_too_small_for_its_metadata_is_dropped() {
        // 8193 blocks of 1 KiB: the second group would have 1 block
        let l = Layout::new(8193 * 1024 + 512).unwrap();
        assert_eq!((l.groups, l.blocks), (1, 8193));
        let l = Layout::new(9 << 20).unwrap();
        assert_eq!(l.groups, 2);
        assert!(l.group_blocks(1) >= l.overhead(1) + 50);
    }

    #[test]
    fn too_small_or_too_large_is_refused() {
        assert!(Layout::new(1 << 20).unwrap_err().contains("too small"));
        assert!(Layout::new(5 << 40).unwrap_err().contains("too large"));
    }

    #[test]
    fn counts_add_up() {
        for mb in [2u64, 3, 9, 32, 100, 600] {
            let l = Layout::new(mb << 20).unwrap();
            let total: u32 = (0..l.groups).map(|g| l.group_blocks(g)).sum();
            assert_eq!(total + 1, l.blocks, "{mb} MiB");
            assert!(l.free_blocks() < l.blocks);
            assert_eq!(l.inodes_per_group % 8, 0);
        }
    }

    #[test]
    fn directory_blocks_chain_to_the_block_end() {
        let b = dir_block(&[(2, "."), (2, ".."), (11, "lost+found")]);
        let rec = |o: usize| u16::from_le_bytes([b[o + 4], b[o + 5]]) as usize;
        assert_eq!((rec(0), rec(12), rec(24)), (12, 12, 1000));
        assert_eq!(&b[32..42], b"lost+found");
    }

    /// e2fsprogs' own check of what is made, at sizes around the layout's edges (one group,
    /// a dropped last group, backups in groups 1, 3, 5, 7, 9, 25, 27, 49, the 16 KiB ratio).
    #[test]
    fn e2fsck_finds_nothing_to_fix() {
        let dir = std::env::temp_dir().join(format!("pv-ext4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        for mb in [2u64, 9, 32, 401, 600] {
            let img = dir.join(format!("{mb}.img"));
            let f = std::fs::File::create(&img).unwrap();
            f.set_len(mb << 20).unwrap();
            let ids = Ids {
                uuid: [mb as u8; 16],
                hash_seed: [3; 16],
                now,
            };
            mkfs(&f, mb << 20, &ids).unwrap();
            drop(f);
            let out = std::process::Command::new("e2fsck")
                .arg("-fn")
                .arg(&img)
                .output()
                .expect("e2fsck (e2fsprogs: scripts/setup) runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{mb} MiB: e2fsck -fn: {}\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("11/"), "{mb} MiB: {text}");
            std::fs::remove_file(&img).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn bitmaps_pad_past_the_valid_bits() {
        let b = bitmap(11, 2048);
        assert_eq!((b[0], b[1], b[2]), (0xFF, 0x07, 0));
        assert_eq!((b[255], b[256], b[1023]), (0, 0xFF, 0xFF));
    }
}
