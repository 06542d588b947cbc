//! The format check: a shared library for this OS and machine that exports the plugin root
//! module, judged from the file's bytes without mapping them.

use object::endian::Endianness;
use object::read::elf::{Dyn, ElfFile, FileHeader, ProgramHeader};
use object::read::macho::{FatArch, MachOFatFile, MachOFatFile32, MachOFatFile64};
use object::{elf, Architecture, BinaryFormat, FileKind, NameOrOrdinal, Object, ObjectKind};
use plugin_abi::ROOT_MODULE_SYMBOL;

/// The executable format this host's `dlopen` (or `LoadLibrary`) loads.
const HOST_FORMAT: BinaryFormat = if cfg!(target_vendor = "apple") {
    BinaryFormat::MachO
} else if cfg!(windows) {
    BinaryFormat::Pe
} else {
    BinaryFormat::Elf
};

/// Checks that `bytes` hold a shared library for this OS and this machine's architecture
/// that exports [`ROOT_MODULE_SYMBOL`]. Returns the parsed file (for a universal Mach-O
/// file, the slice for this machine), or why the bytes are not a plugin library, as one
/// clause.
pub(crate) fn check_format(bytes: &[u8]) -> Result<object::File<'_>, String> {
    if bytes.starts_with(b"!<arch>\n") {
        return Err(
            "a static library (an `ar` archive), not a shared library: build the plugin \
             with `crate-type = [\"cdylib\"]`"
                .to_owned(),
        );
    }
    let unknown = || {
        format!(
            "not a shared library: no {} header",
            format_name(HOST_FORMAT)
        )
    };
    let data = match FileKind::parse(bytes).map_err(|_| unknown())? {
        FileKind::MachOFat32 => fat_slice(bytes, MachOFatFile32::parse(bytes))?,
        FileKind::MachOFat64 => fat_slice(bytes, MachOFatFile64::parse(bytes))?,
        FileKind::Elf32
        | FileKind::Elf64
        | FileKind::MachO32
        | FileKind::MachO64
        | FileKind::Pe32
        | FileKind::Pe64 => bytes,
        FileKind::Coff | FileKind::CoffBig | FileKind::CoffImport => {
            return Err("a COFF object file, not a shared library".to_owned())
        }
        _ => return Err(unknown()),
    };
    let file = object::File::parse(data).map_err(|e| {
        format!(
            "its {} headers are malformed ({e})",
            format_name(HOST_FORMAT)
        )
    })?;
    let format = format_name(file.format());
    if file.format() != HOST_FORMAT {
        return Err(format!(
            "a {format} file, but this host loads {} shared libraries",
            format_name(HOST_FORMAT)
        ));
    }
    check_machine(file.architecture(), file.is_little_endian())?;
    match file.kind() {
        ObjectKind::Dynamic if is_position_independent_executable(&file) => {
            return Err(format!(
                "an {format} position-independent executable, not a shared library"
            ))
        }
        ObjectKind::Dynamic => {}
        ObjectKind::Executable => {
            return Err(format!("an {format} executable, not a shared library"))
        }
        ObjectKind::Relocatable => {
            return Err(format!(
                "an {format} relocatable object (`.o`), not a shared library"
            ))
        }
        ObjectKind::Core => return Err(format!("an {format} core dump, not a shared library")),
        _ => {
            return Err(format!(
                "an {format} file of no known type, not a shared library"
            ))
        }
    }
    if !exports_root_module(&file)? {
        return Err(format!(
            "it does not export `{ROOT_MODULE_SYMBOL}`, the root module `export_plugin!` defines"
        ));
    }
    Ok(file)
}

fn format_name(format: BinaryFormat) -> &'static str {
    match format {
        BinaryFormat::Elf => "ELF",
        BinaryFormat::MachO => "Mach-O",
        BinaryFormat::Pe => "PE",
        BinaryFormat::Coff => "COFF",
        BinaryFormat::Xcoff => "XCOFF",
        BinaryFormat::Wasm => "WebAssembly",
        _ => "unknown",
    }
}

/// The slice of a universal Mach-O file built for this machine.
fn fat_slice<'data, Arch: FatArch>(
    bytes: &'data [u8],
    fat: object::Result<MachOFatFile<'data, Arch>>,
) -> Result<&'data [u8], String> {
    let fat = fat.map_err(|e| format!("its universal Mach-O header is malformed ({e})"))?;
    let host = host_architecture();
    let mut found = Vec::new();
    for arch in fat.arches() {
        if arch.architecture() == host {
            return arch
                .data(bytes)
                .map_err(|e| format!("its {} slice is malformed ({e})", arch_name(host)));
        }
        found.push(arch_name(arch.architecture()));
    }
    Err(format!(
        "a universal Mach-O file without a slice for {} (it has {})",
        arch_name(host),
        found.join(", ")
    ))
}

/// Whether an ELF shared object is in fact an executable: `DF_1_PIE` in `DT_FLAGS_1`.
fn is_position_independent_executable(file: &object::File<'_>) -> bool {
    fn pie<Elf: FileHeader<Endian = Endianness>>(file: &ElfFile<'_, Elf>) -> bool {
        let endian = file.endian();
        file.elf_program_headers().iter().any(|header| {
            let Ok(Some(entries)) = header.dynamic(endian, file.data()) else {
                return false;
            };
            entries.iter().any(|entry| {
                entry.tag(endian) == elf::DT_FLAGS_1 && entry.val(endian) & elf::DF_1_PIE.0 != 0
            })
        })
    }
    match file {
        object::File::Elf32(file) => pie(file),
        object::File::Elf64(file) => pie(file),
        _ => false,
    }
}

/// Checks that a file built for `arch` with that byte order runs on this machine.
fn check_machine(arch: Architecture, little_endian: bool) -> Result<(), String> {
    let host = host_architecture();
    if host == Architecture::Unknown {
        // A machine `object` does not know: leave the check to the loader.
        return Ok(());
    }
    if arch != host {
        return Err(format!(
            "built for {}, this host is {}",
            arch_name(arch),
            arch_name(host)
        ));
    }
    let host_little = cfg!(target_endian = "little");
    if little_endian != host_little {
        let order = |little| {
            if little {
                "little-endian"
            } else {
                "big-endian"
            }
        };
        return Err(format!(
            "built for {} {}, this host is {} {}",
            order(little_endian),
            arch_name(arch),
            order(host_little),
            arch_name(host)
        ));
    }
    Ok(())
}

/// The architecture of this host, as `object` names it (`Unknown` for one it does not
/// know).
fn host_architecture() -> Architecture {
    let wide = cfg!(target_pointer_width = "64");
    match std::env::consts::ARCH {
        "x86_64" if wide => Architecture::X86_64,
        "x86_64" => Architecture::X86_64_X32,
        "x86" => Architecture::I386,
        "aarch64" if wide => Architecture::Aarch64,
        "aarch64" => Architecture::Aarch64_Ilp32,
        "arm" => Architecture::Arm,
        "riscv64" => Architecture::Riscv64,
        "riscv32" => Architecture::Riscv32,
        "powerpc64" => Architecture::PowerPc64,
        "powerpc" => Architecture::PowerPc,
        "s390x" => Architecture::S390x,
        "mips64" if wide => Architecture::Mips64,
        "mips64" => Architecture::Mips64_N32,
        "mips" => Architecture::Mips,
        "loongarch64" => Architecture::LoongArch64,
        "sparc64" => Architecture::Sparc64,
        "m68k" => Architecture::M68k,
        "csky" => Architecture::Csky,
        "hexagon" => Architecture::Hexagon,
        _ => Architecture::Unknown,
    }
}

/// An architecture named as Rust's `std::env::consts::ARCH` names it.
fn arch_name(arch: Architecture) -> String {
    match arch {
        Architecture::X86_64 => "x86_64",
        Architecture::X86_64_X32 => "x86_64 (x32)",
        Architecture::I386 => "x86",
        Architecture::Aarch64 => "aarch64",
        Architecture::Aarch64_Ilp32 => "aarch64 (ilp32)",
        Architecture::Arm => "arm",
        Architecture::Riscv64 => "riscv64",
        Architecture::Riscv32 => "riscv32",
        Architecture::PowerPc64 => "powerpc64",
        Architecture::PowerPc => "powerpc",
        Architecture::S390x => "s390x",
        Architecture::Mips64 => "mips64",
        Architecture::Mips64_N32 => "mips64 (n32)",
        Architecture::Mips => "mips",
        Architecture::LoongArch64 => "loongarch64",
        Architecture::Sparc64 => "sparc64",
        Architecture::M68k => "m68k",
        Architecture::Csky => "csky",
        Architecture::Hexagon => "hexagon",
        Architecture::Unknown => "an unknown architecture",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_owned()
}

/// Whether the file's export table (ELF: its dynamic symbols) holds the root-module symbol.
fn exports_root_module(file: &object::File<'_>) -> Result<bool, String> {
    // Mach-O prefixes C symbol names with an underscore.
    let mach_o = format!("_{ROOT_MODULE_SYMBOL}");
    let wanted = if file.format() == BinaryFormat::MachO {
        mach_o.as_bytes()
    } else {
        ROOT_MODULE_SYMBOL.as_bytes()
    };
    let unreadable = |e: object::Error| format!("its export table is malformed ({e})");
    for export in file.exports().map_err(unreadable)? {
        if export.map_err(unreadable)?.name() == NameOrOrdinal::Name(wanted) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
