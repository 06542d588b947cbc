//! Running git and cargo: no standard input, standard output read line by line, and the end
//! of the error output kept for the error message (and copied through if asked).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

use super::BuildError;

/// Lines of error output kept for a message.
const TAIL_LINES: usize = 60;
/// Longest error output line kept, in bytes; the rest of a longer line is dropped.
const TAIL_LINE_BYTES: usize = 2000;
/// Longest standard output line passed on, in bytes; longer lines are skipped.
const STDOUT_LINE_BYTES: usize = 4 << 20;

/// How a command ended.
pub(super) struct Finished {
    /// The command line, for messages.
    pub(super) command: String,
    /// Its exit status.
    pub(super) status: ExitStatus,
    /// The last [`TAIL_LINES`] lines of its error output.
    pub(super) stderr: String,
}

/// Runs `cmd` to the end with standard input closed, calling `on_line` for each line of its
/// standard output (without the line end). Its error output is copied to ours if `echo`.
pub(super) fn run(
    cmd: &mut Command,
    echo: bool,
    mut on_line: impl FnMut(&[u8]),
) -> Result<Finished, BuildError> {
    let command = command_line(cmd);
    tracing::debug!(%command, "running");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| BuildError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (read_result, stderr) = std::thread::scope(|scope| {
        let tail = scope.spawn(move || stderr.map(|e| tail(e, echo)).unwrap_or_default());
        let read_result = match stdout {
            Some(out) => for_each_line(out, STDOUT_LINE_BYTES, |line| on_line(line)),
            None => Ok(()),
        };
        if read_result.is_err() {
            // Nobody reads its output any more: stop it rather than wait on a full pipe.
            let _ = child.kill();
        }
        (read_result, tail.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .map_err(BuildError::io("wait for", command.clone()))?;
    read_result.map_err(BuildError::io("read the output of", command.clone()))?;
    Ok(Finished {
        command,
        status,
        stderr,
    })
}

/// `program arg arg`, with arguments holding spaces or quotes quoted, for messages.
pub(super) fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    if !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || "'\"\\$`".contains(c))
    {
        return arg.into_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Reads `reader` to the end and returns its last lines, each cut at [`TAIL_LINE_BYTES`].
fn tail(reader: impl Read, echo: bool) -> String {
    let mut lines = VecDeque::with_capacity(TAIL_LINES);
    let _ = for_each_line(reader, TAIL_LINE_BYTES, |line| {
        if echo {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line);
            let _ = err.write_all(b"\n");
        }
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(String::from_utf8_lossy(line).trim_end().to_owned());
    });
    let lines: Vec<String> = lines.into();
    lines.join("\n").trim().to_owned()
}

/// Calls `f` with each line of `reader`, without its line end. A line longer than `cap`
/// bytes is passed cut at `cap`, and the rest of it is skipped.
fn for_each_line(reader: impl Read, cap: usize, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(cap as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if line.len() >= cap {
            skip_line(&mut reader)?;
        }
        f(&line);
    }
}

/// Consumes `reader` up to and including the next line end.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(at) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(at + 1);
            return Ok(());
        }
        let len = buf.len();
        reader.consume(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<String> {
        let mut out = Vec::new();
        for_each_line(input, cap, |line| {
            out.push(String::from_utf8_lossy(line).into_owned())
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_are_split_and_long_lines_cut() {
        assert_eq!(lines(b"a\nbc\r\n\nd", 10), ["a", "bc", "", "d"]);
        assert_eq!(lines(b"abcdefgh\nij\n", 4), ["abcd", "ij"]);
        assert_eq!(lines(b"abcd\nef", 4), ["abcd", "ef"]);
        assert!(lines(b"", 4).is_empty());
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let input: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let kept = tail(input.as_bytes(), false);
        assert!(kept.starts_with("line 40\n"), "{kept}");
        assert!(kept.ends_with("line 99"), "{kept}");
        assert_eq!(kept.lines().count(), TAIL_LINES);
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let mut cmd = Command::new("git");
        cmd.args(["clone", "--", "/a b/c", "it's", ""]);
        assert_eq!(command_line(&cmd), r"git clone -- '/a b/c' 'it'\''s' ''");
    }
}
