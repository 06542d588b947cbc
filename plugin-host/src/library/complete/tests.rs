//! Completeness of real and hand-made ELF, Mach-O and PE files, whole and truncated.

use std::sync::OnceLock;

use super::*;

/// This test binary: a real ELF (Mach-O, PE) file.
fn exe_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(std::env::current_exe().unwrap()).unwrap())
}

/// Judges bytes in memory, as [`library_status`] judges a file.
fn complete(bytes: &[u8]) -> bool {
    let len = bytes.len() as u64;
    status(len, required_len(bytes, len)) == Status::Complete
}

#[test]
fn real_binary_is_complete_only_whole() {
    let exe = exe_bytes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.so");
    std::fs::write(&path, exe).unwrap();
    assert!(library_complete(&path).unwrap());
    for cut in [4, 16, 63, exe.len() / 2, exe.len() - 1] {
        std::fs::write(&path, &exe[..cut]).unwrap();
        assert!(
            !library_complete(&path).unwrap(),
            "cut at {cut} of {}",
            exe.len()
        );
    }
    std::fs::write(&path, "").unwrap();
    assert!(!library_complete(&path).unwrap(), "empty");
    std::fs::write(&path, "abcd").unwrap();
    assert!(library_complete(&path).unwrap(), "4 bytes, no magic");
    std::fs::write(&path, "abc").unwrap();
    assert!(!library_complete(&path).unwrap(), "3 bytes");
    let missing = library_complete(&dir.path().join("missing.so")).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
}

fn put(buf: &mut Vec<u8>, at: usize, value: &[u8]) {
    if buf.len() < at + value.len() {
        buf.resize(at + value.len(), 0);
    }
    buf[at..at + value.len()].copy_from_slice(value);
}

/// Asserts the bytes are complete from exactly `needed` bytes on.
#[track_caller]
fn assert_needs(bytes: &[u8], needed: usize) {
    let mut file = bytes.to_vec();
    file.resize(needed.max(file.len()), 0);
    assert!(
        complete(&file[..needed]),
        "{needed} bytes should be complete"
    );
    assert!(
        !complete(&file[..needed - 1]),
        "{} bytes should not",
        needed - 1
    );
    assert!(
        complete(&[&file[..], &[0; 100]].concat()),
        "longer is complete too"
    );
}

fn elf64_le() -> Vec<u8> {
    let mut h = Vec::new();
    put(&mut h, 0, b"\x7fELF\x02\x01\x01");
    put(&mut h, 0x20, &64u64.to_le_bytes()); // e_phoff
    put(&mut h, 0x28, &300u64.to_le_bytes()); // e_shoff
    put(&mut h, 0x36, &56u16.to_le_bytes()); // e_phentsize
    put(&mut h, 0x38, &2u16.to_le_bytes()); // e_phnum
    put(&mut h, 0x3a, &64u16.to_le_bytes()); // e_shentsize
    put(&mut h, 0x3c, &2u16.to_le_bytes()); // e_shnum
                                            // Program header 1: PT_LOAD, p_offset 0, p_filesz 200.
    put(&mut h, 64, &1u32.to_le_bytes());
    put(&mut h, 64 + 0x20, &200u64.to_le_bytes());
    // Program header 2: PT_NULL with a silly size, ignored.
    put(&mut h, 120 + 0x08, &5000u64.to_le_bytes());
    put(&mut h, 120 + 0x20, &5000u64.to_le_bytes());
    h
}

#[test]
fn elf_needs_section_table_and_segments() {
    // Section headers end at 300 + 2 * 64.
    assert_needs(&elf64_le(), 428);

    // Segment data past the section header table.
    let mut h = elf64_le();
    put(&mut h, 64 + 0x08, &400u64.to_le_bytes());
    assert_needs(&h, 600);

    // Extended numbering: e_shnum 0, the count in section header 0's sh_size.
    let mut h = elf64_le();
    put(&mut h, 0x3c, &0u16.to_le_bytes());
    put(&mut h, 300 + 0x20, &3u64.to_le_bytes());
    assert_needs(&h, 300 + 3 * 64);

    // 32-bit big-endian.
    let mut h = Vec::new();
    put(&mut h, 0, b"\x7fELF\x01\x02\x01");
    put(&mut h, 0x1c, &52u32.to_be_bytes()); // e_phoff
    put(&mut h, 0x20, &100u32.to_be_bytes()); // e_shoff
    put(&mut h, 0x2a, &32u16.to_be_bytes()); // e_phentsize
    put(&mut h, 0x2c, &1u16.to_be_bytes()); // e_phnum
    put(&mut h, 0x2e, &40u16.to_be_bytes()); // e_shentsize
    put(&mut h, 0x30, &4u16.to_be_bytes()); // e_shnum
    put(&mut h, 52, &1u32.to_be_bytes()); // PT_LOAD
    put(&mut h, 52 + 0x04, &1000u32.to_be_bytes()); // p_offset
    put(&mut h, 52 + 0x10, &24u32.to_be_bytes()); // p_filesz
    assert_needs(&h, 1024);

    // Too short for the header itself.
    assert!(!complete(&elf64_le()[..40]));
}

#[test]
fn mach_o_needs_every_segment() {
    let mut h = Vec::new();
    put(&mut h, 0, &0xfeed_facf_u32.to_le_bytes());
    put(&mut h, 16, &2u32.to_le_bytes()); // ncmds
    put(&mut h, 20, &144u32.to_le_bytes()); // sizeofcmds
    for (i, (fileoff, filesize)) in [(0u64, 4096u64), (4096, 100)].into_iter().enumerate() {
        let at = 32 + i * 72;
        put(&mut h, at, &0x19u32.to_le_bytes()); // LC_SEGMENT_64
        put(&mut h, at + 4, &72u32.to_le_bytes());
        put(&mut h, at + 40, &fileoff.to_le_bytes());
        put(&mut h, at + 48, &filesize.to_le_bytes());
    }
    assert_needs(&h, 4196);

    // 32-bit, big-endian.
    let mut h = Vec::new();
    put(&mut h, 0, &0xfeed_face_u32.to_be_bytes());
    put(&mut h, 16, &1u32.to_be_bytes());
    put(&mut h, 20, &56u32.to_be_bytes());
    put(&mut h, 28, &0x1u32.to_be_bytes()); // LC_SEGMENT
    put(&mut h, 32, &56u32.to_be_bytes());
    put(&mut h, 28 + 32, &512u32.to_be_bytes());
    put(&mut h, 28 + 36, &88u32.to_be_bytes());
    assert_needs(&h, 600);

    // Load commands cut off.
    assert!(!complete(&h[..40]));
}

#[test]
fn fat_mach_o_needs_every_slice() {
    let mut h = Vec::new();
    put(&mut h, 0, &0xcafe_babe_u32.to_be_bytes());
    put(&mut h, 4, &2u32.to_be_bytes());
    put(&mut h, 8 + 8, &4096u32.to_be_bytes());
    put(&mut h, 8 + 12, &100u32.to_be_bytes());
    put(&mut h, 28 + 8, &8192u32.to_be_bytes());
    put(&mut h, 28 + 12, &50u32.to_be_bytes());
    assert_needs(&h, 8242);

    // A Java class file (same magic, version 52) is not a universal binary.
    let class = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52, 0, 0];
    assert!(complete(&class));
}

#[test]
fn pe_needs_sections_and_certificates() {
    let mut h = Vec::new();
    put(&mut h, 0, b"MZ");
    put(&mut h, 0x3c, &0x80u32.to_le_bytes()); // e_lfanew
    put(&mut h, 0x80, b"PE\0\0");
    put(&mut h, 0x80 + 6, &2u16.to_le_bytes()); // NumberOfSections
    put(&mut h, 0x80 + 20, &240u16.to_le_bytes()); // SizeOfOptionalHeader
    let optional = 0x80 + 24;
    put(&mut h, optional, &0x20bu16.to_le_bytes()); // PE32+
    put(&mut h, optional + 108, &16u32.to_le_bytes()); // NumberOfRvaAndSizes
    let sections = optional + 240;
    for (i, (at, len)) in [(0x400u32, 0x200u32), (0x600, 0x200)]
        .into_iter()
        .enumerate()
    {
        put(&mut h, sections + i * 40 + 16, &len.to_le_bytes());
        put(&mut h, sections + i * 40 + 20, &at.to_le_bytes());
    }
    assert_needs(&h, 0x800);

    // An Authenticode signature after the sections.
    put(&mut h, optional + 112 + 32, &0x900u32.to_le_bytes());
    put(&mut h, optional + 112 + 36, &0x80u32.to_le_bytes());
    assert_needs(&h, 0x980);

    // An MS-DOS program is not a library: complete once its header is there.
    let mut dos = h.clone();
    put(&mut dos, 0x80, b"XX");
    assert!(complete(&dos[..0x100]));
    // The PE header not there yet.
    assert!(!complete(&h[..0x90]));
}

#[test]
fn unknown_or_malformed_files_count_as_complete() {
    assert!(complete(b"\0\0\0\0"));
    assert!(complete(b"#!/bin/sh\n"));
    assert!(!complete(b""));
    assert!(!complete(b"\x7fEL"));
    // An unknown ELF class.
    let mut h = elf64_le();
    h[4] = 3;
    assert!(complete(&h));
    // Offsets that overflow.
    let mut h = elf64_le();
    h.resize(428, 0);
    put(&mut h, 0x28, &(u64::MAX - 10).to_le_bytes());
    assert!(complete(&h));
    // An offset far beyond the file, but possible: incomplete.
    let mut h = elf64_le();
    h.resize(428, 0);
    put(&mut h, 0x28, &(1u64 << 40).to_le_bytes());
    assert!(!complete(&h));
}

#[test]
fn garbage_never_panics() {
    // A small deterministic generator (xorshift), to mutate real and made-up headers.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let exe = &exe_bytes()[..exe_bytes().len().min(8192)];
    let seeds: [Vec<u8>; 3] = [elf64_le(), exe.to_vec(), {
        let mut h = b"MZ".to_vec();
        h.resize(0x200, 0);
        put(&mut h, 0x3c, &0x40u32.to_le_bytes());
        put(&mut h, 0x40, b"PE\0\0");
        h
    }];
    let magics: [&[u8]; 7] = [
        b"\xcf\xfa\xed\xfe",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
        b"\xca\xfe\xba\xbf",
        b"MZ",
        b"\x7fELF",
    ];
    for round in 0..3000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        if round % 2 == 0 {
            put(&mut bytes, 0, magics[round % magics.len()]);
        }
        for _ in 0..(next() % 16) {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let cut = (next() % (bytes.len() as u64 + 1)) as usize;
        let _ = complete(&bytes[..cut]);
    }
}
