//! The format check on files that are not plugin libraries: other kinds, other machines.

use super::*;

fn reason(bytes: &[u8]) -> String {
    match check_format(bytes) {
        Ok(_) => panic!("accepted"),
        Err(reason) => reason,
    }
}

#[test]
fn not_a_library_at_all() {
    let shown = reason(b"definitely not a library");
    assert!(shown.starts_with("not a shared library: no "), "{shown}");
    assert_eq!(reason(b""), shown);
    let shown = reason(b"!<arch>\nlibhello.rlib/");
    assert!(shown.contains("static library"), "{shown}");
    assert!(shown.contains("cdylib"), "{shown}");
}

#[test]
fn names_every_architecture_like_rust() {
    assert_eq!(arch_name(Architecture::X86_64), "x86_64");
    assert_eq!(arch_name(Architecture::Aarch64), "aarch64");
    assert_eq!(arch_name(Architecture::Wasm32), "wasm32");
    assert_eq!(arch_name(host_architecture()), std::env::consts::ARCH);
}

#[test]
fn another_machine_or_byte_order_is_refused() {
    let host = host_architecture();
    let other = if host == Architecture::Aarch64 {
        Architecture::X86_64
    } else {
        Architecture::Aarch64
    };
    let shown = check_machine(other, cfg!(target_endian = "little")).unwrap_err();
    assert_eq!(
        shown,
        format!(
            "built for {}, this host is {}",
            arch_name(other),
            std::env::consts::ARCH
        )
    );
    let shown = check_machine(host, !cfg!(target_endian = "little")).unwrap_err();
    assert!(shown.contains("-endian"), "{shown}");
    check_machine(host, cfg!(target_endian = "little")).unwrap();
}

/// Edits of this test binary, an ELF executable.
#[cfg(all(unix, not(target_vendor = "apple")))]
mod elf_files {
    use super::*;

    fn exe() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
        let value = if bytes[5] == elf::ELFDATA2MSB.0 {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        bytes[at..at + 2].copy_from_slice(&value);
    }

    #[test]
    fn an_executable_is_not_a_shared_library() {
        let shown = reason(&exe());
        assert!(
            shown == "an ELF position-independent executable, not a shared library"
                || shown == "an ELF executable, not a shared library",
            "{shown}"
        );
        let mut bytes = exe();
        put_u16(&mut bytes, 16, elf::ET_EXEC.0);
        assert_eq!(reason(&bytes), "an ELF executable, not a shared library");
        put_u16(&mut bytes, 16, elf::ET_REL.0);
        assert_eq!(
            reason(&bytes),
            "an ELF relocatable object (`.o`), not a shared library"
        );
        put_u16(&mut bytes, 16, elf::ET_CORE.0);
        assert_eq!(reason(&bytes), "an ELF core dump, not a shared library");
    }

    #[test]
    fn a_library_for_another_machine_is_refused_by_name() {
        let mut bytes = exe();
        let (machine, name) = if host_architecture() == Architecture::Aarch64 {
            (elf::EM_X86_64, "x86_64")
        } else {
            (elf::EM_AARCH64, "aarch64")
        };
        put_u16(&mut bytes, 18, machine.0);
        assert_eq!(
            reason(&bytes),
            format!("built for {name}, this host is {}", std::env::consts::ARCH)
        );
    }

    #[test]
    fn truncated_headers_are_malformed() {
        let shown = reason(&exe()[..40]);
        assert!(shown.contains("malformed"), "{shown}");
    }
}

#[test]
fn a_coff_object_is_named_as_such() {
    // The COFF header of an x86-64 object file: machine 0x8664, then zeros.
    let mut bytes = vec![0x64, 0x86];
    bytes.resize(64, 0);
    assert_eq!(reason(&bytes), "a COFF object file, not a shared library");
}

/// A universal Mach-O header (32- or 64-bit) with one slice, for `cputype`, holding 32 zero
/// bytes.
fn universal(wide: bool, cputype: u32) -> Vec<u8> {
    let magic: u32 = if wide { 0xcafe_babf } else { 0xcafe_babe };
    let header_len: u32 = if wide { 8 + 32 } else { 8 + 20 };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&magic.to_be_bytes());
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&cputype.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes()); // cpusubtype
    if wide {
        bytes.extend_from_slice(&u64::from(header_len).to_be_bytes()); // offset
        bytes.extend_from_slice(&32u64.to_be_bytes()); // size
        bytes.extend_from_slice(&0u32.to_be_bytes()); // align
        bytes.extend_from_slice(&0u32.to_be_bytes()); // reserved
    } else {
        bytes.extend_from_slice(&header_len.to_be_bytes()); // offset
        bytes.extend_from_slice(&32u32.to_be_bytes()); // size
        bytes.extend_from_slice(&0u32.to_be_bytes()); // align
    }
    assert_eq!(bytes.len(), header_len as usize);
    bytes.resize(bytes.len() + 32, 0);
    bytes
}

#[test]
fn a_universal_file_without_a_slice_for_this_machine_lists_the_ones_it_has() {
    const CPU_TYPE_X86_64: u32 = 0x0100_0007;
    const CPU_TYPE_ARM64: u32 = 0x0100_000c;
    let (cputype, other) = if host_architecture() == Architecture::Aarch64 {
        (CPU_TYPE_X86_64, "x86_64")
    } else {
        (CPU_TYPE_ARM64, "aarch64")
    };
    for wide in [false, true] {
        assert_eq!(
            reason(&universal(wide, cputype)),
            format!(
                "a universal Mach-O file without a slice for {} (it has {other})",
                arch_name(host_architecture())
            ),
            "wide: {wide}"
        );
    }
}
