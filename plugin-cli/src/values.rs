//! Context values from the command line: `--set` (the type guessed), `--set-json` (JSON)
//! and `--set-file` (a file's text).

use std::path::Path;

use serde_json::Value;

use crate::Failure;

/// The largest file `--set-file` reads.
pub(crate) const MAX_SET_FILE_BYTES: u64 = 16 << 20;

/// How the value of one `KEY=...` argument is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--set`: JSON if it parses as JSON, else the text as a string (as helm does).
    Guess,
    /// `--set-json`: JSON, or an error.
    Json,
    /// `--set-file`: the text of the file the value names.
    File,
}

impl Kind {
    fn flag(self) -> &'static str {
        match self {
            Kind::Guess => "--set",
            Kind::Json => "--set-json",
            Kind::File => "--set-file",
        }
    }
}

/// Splits `KEY=VALUE` and reads the value as `kind` says.
pub(crate) fn parse(pair: &str, kind: Kind) -> Result<(&str, Value), Failure> {
    let flag = kind.flag();
    let Some((key, text)) = pair.split_once('=') else {
        return Err(Failure {
            cause: format!("{flag} `{pair}` has no `=`"),
            hint: format!("write {flag} KEY=VALUE, e.g. {flag} name=world"),
        });
    };
    if key.is_empty() {
        return Err(Failure {
            cause: format!("{flag} `{pair}` has an empty key"),
            hint: format!("write {flag} KEY=VALUE, e.g. {flag} count=3"),
        });
    }
    let value = match kind {
        Kind::Guess => serde_json::from_str(text).unwrap_or_else(|_| Value::from(text)),
        Kind::Json => serde_json::from_str(text).map_err(|e| Failure {
            cause: format!("--set-json {key}: `{text}` is not JSON ({e})"),
            hint: format!("quote strings as JSON (--set-json {key}='\"{text}\"'), or use --set"),
        })?,
        Kind::File => Value::from(read_file(key, Path::new(text))?),
    };
    Ok((key, value))
}

fn read_file(key: &str, path: &Path) -> Result<String, Failure> {
    let failure = |why: String| Failure {
        cause: format!("--set-file {key}: cannot read {}: {why}", path.display()),
        hint: format!(
            "name a readable UTF-8 text file of at most {} MiB",
            MAX_SET_FILE_BYTES >> 20
        ),
    };
    let meta = std::fs::metadata(path).map_err(|e| failure(e.to_string()))?;
    if !meta.is_file() {
        return Err(failure("it is not a regular file".to_owned()));
    }
    if meta.len() > MAX_SET_FILE_BYTES {
        return Err(failure(format!("it is {} bytes long", meta.len())));
    }
    std::fs::read_to_string(path).map_err(|e| failure(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_guesses_and_set_json_insists() {
        let guess = |pair| parse(pair, Kind::Guess).map(|(k, v)| (k.to_owned(), v));
        assert_eq!(guess("n=5").ok(), Some(("n".into(), json!(5))));
        assert_eq!(guess("on=true").ok(), Some(("on".into(), json!(true))));
        assert_eq!(
            guess("name=world").ok(),
            Some(("name".into(), json!("world")))
        );
        assert_eq!(guess("id=\"42\"").ok(), Some(("id".into(), json!("42"))));
        assert_eq!(
            guess(r#"s={"name":"x"}"#).ok(),
            Some(("s".into(), json!({ "name": "x" })))
        );
        assert_eq!(guess("empty=").ok(), Some(("empty".into(), json!(""))));
        assert!(guess("novalue").is_err());
        assert!(guess("=1").is_err());

        let strict = |pair| parse(pair, Kind::Json);
        assert_eq!(strict("n=5").unwrap().1, json!(5));
        let err = strict("name=world").unwrap_err();
        assert!(err.cause.contains("is not JSON"), "{}", err.cause);
    }

    #[test]
    fn set_file_reads_text_and_refuses_folders() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body.txt");
        std::fs::write(&file, "line one\nline two\n").unwrap();
        let pair = format!("body={}", file.display());
        assert_eq!(
            parse(&pair, Kind::File).unwrap().1,
            json!("line one\nline two\n")
        );
        let pair = format!("body={}", dir.path().display());
        let err = parse(&pair, Kind::File).unwrap_err();
        assert!(err.cause.contains("not a regular file"), "{}", err.cause);
    }
}
