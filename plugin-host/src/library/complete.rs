//! Whether a library file is complete: it reaches every byte range its headers declare.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::mem::size_of;
use std::path::Path;

use object::endian::{BigEndian, Endianness, LittleEndian as LE};
use object::read::coff::SectionTable;
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::macho::{FatArch, MachHeader};
use object::read::pe::ImageNtHeaders;
use object::read::{ReadCache, ReadCacheOps, ReadRef};
use object::{elf, macho, pe};

/// Whether the library at `path` is complete, judged from its own headers, never from
/// timing: the file is at least as long as every byte range its headers declare.
///
/// - ELF (32 or 64-bit, either byte order): the end of the program header table, of every
///   program header's segment (`p_offset + p_filesz`) and of the section header table
///   (`e_shoff + e_shnum * e_shentsize`, with extended numbering).
/// - Mach-O (32 or 64-bit, either byte order): the end of the load commands and of every
///   segment (`fileoff + filesize`); for a universal (fat) file, the end of every
///   architecture's slice.
/// - PE (`MZ`): the end of the section table, of every section's raw data
///   (`PointerToRawData + SizeOfRawData`) and of the Authenticode certificate table.
///
/// A file too short to hold its own headers is incomplete (so is an empty file, or one
/// shorter than 4 bytes). A file of at least 4 bytes that starts with no known magic, or
/// whose headers are malformed beyond judging (an offset that overflows, a table entry of
/// the wrong size), counts as complete: it is not a library being written, and the loader
/// rejects it with a clear error. Never panics, whatever the file holds.
///
/// # Errors
///
/// The I/O error from opening or reading the file.
pub fn library_complete(path: &Path) -> io::Result<bool> {
    library_status(path).map(|status| status == Status::Complete)
}

/// What [`library_status`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Complete,
    /// The file holds `len` bytes; its headers declare at least `needed`.
    Incomplete {
        len: u64,
        needed: u64,
    },
}

/// [`library_complete`], with the lengths when the file is incomplete.
pub(crate) fn library_status(path: &Path) -> io::Result<Status> {
    // Opened without blocking, should the path be a FIFO, and judged only if it is a
    // regular file.
    let file = crate::small_file::open_nonblocking(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    // Reads only the headers and tables it is asked for, not the whole file.
    let cache = ReadCache::new(Reader {
        file,
        at: 0,
        shrunk_at: None,
        error: None,
    });
    let len = (&cache).len().map_err(|()| io::Error::other("cannot seek"));
    let judged = len.map(|len| (len, required_len(&cache, len)));
    let reader = cache.into_inner();
    if let Some(err) = reader.error {
        return Err(err);
    }
    let (len, judged) = judged?;
    Ok(match (judged, reader.shrunk_at) {
        // The file shrank while being read: it is being rewritten.
        (_, Some(needed)) => Status::Incomplete { len, needed },
        (judged, None) => status(len, judged),
    })
}

/// The status of a file of `len` bytes whose headers were judged as `judged`.
fn status(len: u64, judged: Parse<u64>) -> Status {
    match judged {
        Ok(needed) if len < needed => Status::Incomplete { len, needed },
        Err(Stop::Short(needed)) => Status::Incomplete { len, needed },
        Ok(_) | Err(Stop::Malformed) => Status::Complete,
    }
}

/// A file read through [`ReadCache`], keeping what `ReadCache` would turn into `()`: the
/// first I/O error, and where the file ended early if it shrank while being read.
struct Reader {
    file: File,
    at: u64,
    shrunk_at: Option<u64>,
    error: Option<io::Error>,
}

impl Reader {
    fn keep<T>(&mut self, result: io::Result<T>) -> Result<T, ()> {
        result.map_err(|err| {
            if err.kind() == io::ErrorKind::UnexpectedEof {
                self.shrunk_at.get_or_insert(self.at);
            } else {
                self.error.get_or_insert(err);
            }
        })
    }
}

impl ReadCacheOps for Reader {
    fn len(&mut self) -> Result<u64, ()> {
        let len = self.file.metadata().map(|meta| meta.len());
        self.keep(len)
    }

    fn seek(&mut self, pos: u64) -> Result<u64, ()> {
        self.at = pos;
        let sought = Seek::seek(&mut self.file, SeekFrom::Start(pos));
        self.keep(sought)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        let read = Read::read(&mut self.file, buf);
        let n = self.keep(read)?;
        self.at = self.at.saturating_add(n as u64);
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        // Where the read would end: the length the file needs to have.
        let end = self.at.saturating_add(buf.len() as u64);
        match Read::read_exact(&mut self.file, buf) {
            Ok(()) => {
                self.at = end;
                Ok(())
            }
            Err(err) => {
                self.at = end;
                self.keep(Err(err))
            }
        }
    }
}

/// Why judging stopped early.
#[derive(Debug)]
enum Stop {
    /// The file must hold at least this many bytes for parsing to go on.
    Short(u64),
    /// The headers make no sense (an overflowing offset, an unknown class): not judged.
    Malformed,
}

type Parse<T> = Result<T, Stop>;

/// Largest header table read whole; larger ones only count by their end.
const MAX_TABLE: u64 = 16 << 20;

/// The first `len` bytes of a file, read through `object`. Every read is first checked
/// against `len`, so that "too short" (incomplete) is told apart from "malformed"
/// (`object` reports both as one error).
#[derive(Clone, Copy)]
struct Data<R> {
    data: R,
    len: u64,
}

impl<'data, R: ReadRef<'data>> Data<R> {
    /// `Short(end)` unless the file reaches `end`.
    fn need(self, end: u64) -> Parse<()> {
        if end > self.len {
            Err(Stop::Short(end))
        } else {
            Ok(())
        }
    }

    /// `Short` unless the file holds `n` bytes at `offset`.
    fn need_at(self, offset: u64, n: u64) -> Parse<u64> {
        let end = add(offset, n)?;
        self.need(end)?;
        Ok(end)
    }
}

fn add(a: u64, b: u64) -> Parse<u64> {
    a.checked_add(b).ok_or(Stop::Malformed)
}

fn mul(a: u64, b: u64) -> Parse<u64> {
    a.checked_mul(b).ok_or(Stop::Malformed)
}

fn size<T>() -> u64 {
    size_of::<T>() as u64
}

/// Any error from `object` once the bytes it reads are known to be there.
fn malformed<E>(_: E) -> Stop {
    Stop::Malformed
}

/// The length the headers of a file of `len` bytes declare.
fn required_len<'data, R: ReadRef<'data>>(data: R, len: u64) -> Parse<u64> {
    let d = Data { data, len };
    d.need(4)?;
    let magic = data.read_bytes_at(0, 4).map_err(malformed)?;
    match magic {
        [0x7f, b'E', b'L', b'F'] => {
            d.need(5)?;
            let class = data.read_bytes_at(4, 1).map_err(malformed)?[0];
            if class == elf::ELFCLASS32.0 {
                elf_len::<elf::FileHeader32<Endianness>, R>(d)
            } else if class == elf::ELFCLASS64.0 {
                elf_len::<elf::FileHeader64<Endianness>, R>(d)
            } else {
                Err(Stop::Malformed)
            }
        }
        [0xcf, 0xfa, 0xed, 0xfe] | [0xfe, 0xed, 0xfa, 0xcf] => {
            mach_o_len::<macho::MachHeader64<Endianness>, R>(d)
        }
        [0xce, 0xfa, 0xed, 0xfe] | [0xfe, 0xed, 0xfa, 0xce] => {
            mach_o_len::<macho::MachHeader32<Endianness>, R>(d)
        }
        [0xca, 0xfe, 0xba, 0xbe] => fat_len::<macho::FatArch32, R>(d),
        [0xca, 0xfe, 0xba, 0xbf] => fat_len::<macho::FatArch64, R>(d),
        [b'M', b'Z', ..] => pe_len(d),
        _ => Err(Stop::Malformed),
    }
}

fn elf_len<'data, Elf, R>(d: Data<R>) -> Parse<u64>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let mut end = d.need_at(0, size::<Elf>())?;
    let header = Elf::parse(d.data).map_err(malformed)?;
    let endian = header.endian().map_err(malformed)?;
    let shoff: u64 = header.e_shoff(endian).into();
    let phoff: u64 = header.e_phoff(endian).into();

    // Extended numbering: counts too large for the header live in section header 0.
    if shoff != 0 && (header.e_shnum(endian) == 0 || header.e_phnum(endian) == elf::PN_XNUM) {
        d.need_at(shoff, size::<Elf::SectionHeader>())?;
    }
    let phnum = u64::from(header.phnum(endian, d.data).map_err(malformed)?);
    if phoff != 0 && phnum > 0 {
        if u64::from(header.e_phentsize(endian)) != size::<Elf::ProgramHeader>() {
            return Err(Stop::Malformed);
        }
        let bytes = mul(phnum, size::<Elf::ProgramHeader>())?;
        end = end.max(d.need_at(phoff, bytes)?);
        if bytes <= MAX_TABLE {
            for ph in header.program_headers(endian, d.data).map_err(malformed)? {
                if ph.p_type(endian) == elf::PT_NULL {
                    continue;
                }
                end = end.max(add(ph.p_offset(endian).into(), ph.p_filesz(endian).into())?);
            }
        }
    }
    let shnum = u64::from(header.shnum(endian, d.data).map_err(malformed)?);
    if shoff != 0 && shnum > 0 {
        if u64::from(header.e_shentsize(endian)) != size::<Elf::SectionHeader>() {
            return Err(Stop::Malformed);
        }
        end = end.max(add(shoff, mul(shnum, size::<Elf::SectionHeader>())?)?);
    }
    Ok(end)
}

fn mach_o_len<'data, Mach, R>(d: Data<R>) -> Parse<u64>
where
    Mach: MachHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    d.need_at(0, size::<Mach>())?;
    let header = Mach::parse(d.data, 0).map_err(malformed)?;
    let endian = header.endian().map_err(malformed)?;
    let commands_len = u64::from(header.sizeofcmds(endian));
    let mut end = d.need_at(size::<Mach>(), commands_len)?;
    if commands_len > MAX_TABLE {
        return Ok(end);
    }
    let mut commands = header.load_commands(endian, d.data, 0).map_err(malformed)?;
    while let Some(command) = commands.next().map_err(malformed)? {
        let segment = if let Some((segment, _)) = command.segment_64().map_err(malformed)? {
            Some((segment.fileoff.get(endian), segment.filesize.get(endian)))
        } else if let Some((segment, _)) = command.segment_32().map_err(malformed)? {
            Some((
                u64::from(segment.fileoff.get(endian)),
                u64::from(segment.filesize.get(endian)),
            ))
        } else {
            None
        };
        if let Some((offset, len)) = segment {
            end = end.max(add(offset, len)?);
        }
    }
    Ok(end)
}

fn fat_len<'data, Arch, R>(d: Data<R>) -> Parse<u64>
where
    Arch: FatArch,
    R: ReadRef<'data>,
{
    d.need_at(0, size::<macho::FatHeader>())?;
    let header: &macho::FatHeader = d.data.read_at(0).map_err(malformed)?;
    let count = u64::from(header.nfat_arch.get(BigEndian));
    // Java class files share the magic; their "count" (the class file version) is 45 or
    // more, while universal binaries hold a handful of architectures.
    if count == 0 || count > 30 {
        return Err(Stop::Malformed);
    }
    let mut end = d.need_at(size::<macho::FatHeader>(), mul(count, size::<Arch>())?)?;
    let arches: &[Arch] = d
        .data
        .read_slice_at(size::<macho::FatHeader>(), count as usize)
        .map_err(malformed)?;
    for arch in arches {
        end = end.max(add(arch.offset().into(), arch.size().into())?);
    }
    Ok(end)
}

fn pe_len<'data, R: ReadRef<'data>>(d: Data<R>) -> Parse<u64> {
    d.need_at(0, size::<pe::ImageDosHeader>())?;
    let dos = pe::ImageDosHeader::parse(d.data).map_err(malformed)?;
    let nt_at = u64::from(dos.nt_headers_offset());
    // The signature and the COFF file header.
    let file_header_at = add(nt_at, 4)?;
    d.need_at(file_header_at, size::<pe::ImageFileHeader>())?;
    if d.data.read_bytes_at(nt_at, 4).map_err(malformed)? != b"PE\0\0" {
        // An MS-DOS program, not a library.
        return Err(Stop::Malformed);
    }
    let file_header: &pe::ImageFileHeader = d.data.read_at(file_header_at).map_err(malformed)?;
    let optional_at = add(file_header_at, size::<pe::ImageFileHeader>())?;
    let optional_len = u64::from(file_header.size_of_optional_header.get(LE));
    let sections_at = d.need_at(optional_at, optional_len)?;
    let sections = u64::from(file_header.number_of_sections.get(LE));
    let mut end = d.need_at(
        sections_at,
        mul(sections, size::<pe::ImageSectionHeader>())?,
    )?;
    let table = SectionTable::parse(file_header, d.data, sections_at).map_err(malformed)?;
    for section in table.iter() {
        let raw_len = u64::from(section.size_of_raw_data.get(LE));
        if raw_len > 0 {
            end = end.max(add(section.pointer_to_raw_data.get(LE).into(), raw_len)?);
        }
    }
    // The certificate table (the security data directory) holds a file offset, past the
    // sections. Optional headers that do not parse have none to count.
    let magic = d
        .data
        .read_bytes_at(optional_at, 2)
        .ok()
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    let mut at = nt_at;
    let directories = match magic {
        Some(pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC) => pe::ImageNtHeaders64::parse(d.data, &mut at)
            .ok()
            .map(|(_, directories)| directories),
        Some(pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC) => pe::ImageNtHeaders32::parse(d.data, &mut at)
            .ok()
            .map(|(_, directories)| directories),
        _ => None,
    };
    let certificates = directories
        .as_ref()
        .and_then(|directories| directories.get(pe::IMAGE_DIRECTORY_ENTRY_SECURITY));
    if let Some(certificates) = certificates {
        let cert_len = u64::from(certificates.size.get(LE));
        if cert_len > 0 {
            end = end.max(add(certificates.virtual_address.get(LE).into(), cert_len)?);
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests;
