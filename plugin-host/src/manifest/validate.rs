//! The hand-written validator: every field's rules, each error naming file, field, value and fix.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::raw::{RawHttpServices, RawManifest, RawRequires, RawSource};
use super::{
    HttpMethod, HttpServices, Manifest, ManifestError, Requires, Route, Source, SourceMode,
    MAX_NAME_LEN,
};

/// Longest value quoted verbatim in an error message; longer ones are cut.
const MAX_SHOWN_VALUE: usize = 120;

pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
}

type Checked<T> = Result<T, ManifestError>;

impl Validator<'_> {
    fn invalid(
        &self,
        field: impl Into<String>,
        value: &str,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            value: shown(value),
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    pub(super) fn manifest(&self, raw: RawManifest) -> Checked<Manifest> {
        self.identifier("name", &raw.name, "plugin name")?;
        let version = self.version(&raw.version)?;
        for (i, email) in raw.maintainers.iter().enumerate() {
            self.email(&format!("maintainers[{i}]"), email)?;
        }
        if let Some(home) = &raw.home {
            self.home(home)?;
        }
        let source = self.source(raw.source)?;
        let http_services = raw
            .http_services
            .map(|services| self.http_services(services))
            .transpose()?;
        let requires = raw
            .requires
            .map(|requires| self.requires(requires))
            .transpose()?;
        let sha256 = raw.sha256.map(|digest| self.sha256(digest)).transpose()?;
        Ok(Manifest {
            name: raw.name,
            version,
            description: raw.description,
            maintainers: raw.maintainers,
            home: raw.home,
            source,
            http_services,
            requires,
            sha256,
        })
    }

    /// 1..=64 chars of `[A-Za-z0-9_-]`, first a letter or digit.
    fn identifier(&self, field: &str, value: &str, what: &str) -> Checked<()> {
        let hint = format!(
            "use 1 to {MAX_NAME_LEN} ASCII letters, digits, '-' or '_', starting with a letter \
             or digit (e.g. \"hello-world\")"
        );
        let reason = if value.is_empty() {
            format!("the {what} is empty")
        } else if value.chars().count() > MAX_NAME_LEN {
            format!(
                "the {what} is {} characters long, more than {MAX_NAME_LEN}",
                value.chars().count()
            )
        } else if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            format!("the {what} contains {c:?}, which is not allowed")
        } else if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            format!("the {what} must start with a letter or digit")
        } else {
            return Ok(());
        };
        Err(self.invalid(field, value, reason, hint))
    }

    fn version(&self, value: &str) -> Checked<semver::Version> {
        let hint = "write a SemVer 2 version such as \"1.2.3\" or \"1.2.3-beta.1\": three \
                    numbers without leading zeros, no 'v' prefix, no spaces";
        // semver already rejects all of these; keep the checks so the rule
        // does not depend on the library's leniency.
        if value.trim() != value || value.starts_with(['v', 'V']) {
            return Err(self.invalid(
                "version",
                value,
                "not a strict SemVer 2 version (prefix or surrounding whitespace)",
                hint,
            ));
        }
        semver::Version::parse(value).map_err(|err| {
            self.invalid(
                "version",
                value,
                format!("not a strict SemVer 2 version ({err})"),
                hint,
            )
        })
    }

    fn email(&self, field: &str, value: &str) -> Checked<()> {
        let reason = if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("contains whitespace or control characters")
        } else if value.matches('@').count() != 1 {
            Some("must contain exactly one '@'")
        } else {
            let (local, domain) = value.split_once('@').unwrap_or_default();
            if local.is_empty() {
                Some("nothing before the '@'")
            } else if !domain.contains('.') || domain.split('.').any(str::is_empty) {
                Some("the domain after '@' must have dot-separated, non-empty parts")
            } else {
                None
            }
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(self.invalid(
                field,
                value,
                format!("not an e-mail address: {reason}"),
                "write an address such as \"someone@example.com\"",
            )),
        }
    }

    fn home(&self, value: &str) -> Checked<()> {
        let hint = "write an http or https URL such as \"https://example.com/my-plugin\"";
        let fail = |reason: &str| Err(self.invalid("home", value, reason, hint));
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("the URL contains whitespace or control characters");
        }
        let Some((scheme, rest)) = value.split_once("://") else {
            return fail("not a URL (no \"scheme://\")");
        };
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return fail("only http and https URLs are accepted");
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let host = if host_port.starts_with('[') {
            // IPv6 literal: "[::1]:8080"
            host_port
                .split_once(']')
                .map_or("", |(h, _)| h.trim_start_matches('['))
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        if host.is_empty() {
            return fail("the URL has no host");
        }
        Ok(())
    }

    fn source(&self, raw: RawSource) -> Checked<Source> {
        if raw.path.is_empty() {
            return Err(self.invalid(
                "source.path",
                &raw.path,
                "the path is empty",
                match raw.mode {
                    SourceMode::LocalSo => {
                        "name the shared library relative to the plugin folder, e.g. \"hello\""
                    }
                    SourceMode::RemoteGit => {
                        "give the git remote, e.g. \"https://example.com/me/hello.git\""
                    }
                },
            ));
        }
        match raw.mode {
            SourceMode::LocalSo => self.local_path(&raw.path)?,
            SourceMode::RemoteGit => self.git_remote(&raw.path)?,
        }
        let pins = [
            ("source.rev", &raw.rev),
            ("source.tag", &raw.tag),
            ("source.branch", &raw.branch),
        ];
        let given: Vec<_> = pins
            .iter()
            .filter_map(|(field, value)| value.as_deref().map(|v| (*field, v)))
            .collect();
        if let Some((field, value)) = given.first() {
            if raw.mode != SourceMode::RemoteGit {
                return Err(self.invalid(
                    *field,
                    value,
                    "a git revision is only meaningful with `source.mode` \"remote_git\"",
                    "remove the field, or set `source.mode` to \"remote_git\"",
                ));
            }
        }
        if let [_, (field, value), ..] = given.as_slice() {
            return Err(self.invalid(
                *field,
                value,
                "more than one of `source.rev`, `source.tag` and `source.branch` is given",
                "pin the source with one of them (a `rev`, a full commit id, is the only \
                 pin that cannot move)",
            ));
        }
        if let Some(rev) = &raw.rev {
            self.git_rev(rev)?;
        }
        for (field, value) in [("source.tag", &raw.tag), ("source.branch", &raw.branch)] {
            if let Some(value) = value {
                self.git_ref(field, value)?;
            }
        }
        self.built_from(&raw)?;
        Ok(Source {
            mode: raw.mode,
            path: raw.path,
            rev: raw.rev,
            tag: raw.tag,
            branch: raw.branch,
            repository: raw.repository,
            commit: raw.commit,
        })
    }

    /// A commit pin: the full id, never a prefix that a tag or branch could be named like.
    fn git_rev(&self, rev: &str) -> Checked<()> {
        if is_full_commit_id(rev) {
            return Ok(());
        }
        let reason = if rev.bytes().all(|b| b.is_ascii_hexdigit()) && !rev.is_empty() {
            "a shortened commit id; `source.rev` must be the full id (40 hexadecimal digits, \
             or 64 in a SHA-256 repository)"
        } else {
            "not a commit id (40 hexadecimal digits, or 64 in a SHA-256 repository)"
        };
        Err(self.invalid(
            "source.rev",
            rev,
            reason,
            "give the full commit id as `git rev-parse <commit>` prints it in the repository; \
             for a tag or a branch use `source.tag` or `source.branch`",
        ))
    }

    /// `source.repository` and `source.commit`, which a build from git records: both or
    /// neither, `local_so` only, the commit a full lowercase id.
    fn built_from(&self, raw: &RawSource) -> Checked<()> {
        let hint = "these fields are written by `plugctl build`; remove them, or build the \
                    plugin again";
        let given = [
            ("source.repository", &raw.repository),
            ("source.commit", &raw.commit),
        ];
        for (field, value) in given {
            if let Some(value) = value {
                if raw.mode != SourceMode::LocalSo {
                    return Err(self.invalid(
                        field,
                        value,
                        "only a built plugin (`source.mode` \"local_so\") records where it was \
                         built from",
                        hint,
                    ));
                }
            }
        }
        match (&raw.repository, &raw.commit) {
            (None, None) => Ok(()),
            (Some(repository), None) => Err(self.invalid(
                "source.repository",
                repository,
                "`source.repository` is given without `source.commit`",
                hint,
            )),
            (None, Some(commit)) => Err(self.invalid(
                "source.commit",
                commit,
                "`source.commit` is given without `source.repository`",
                hint,
            )),
            (Some(repository), Some(commit)) => {
                if repository.is_empty() || repository.chars().any(char::is_control) {
                    return Err(self.invalid(
                        "source.repository",
                        repository,
                        "the repository is empty or contains control characters",
                        hint,
                    ));
                }
                if !is_full_commit_id(commit) || commit.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(self.invalid(
                        "source.commit",
                        commit,
                        "not a full commit id (40 lowercase hexadecimal digits, or 64 in a \
                         SHA-256 repository)",
                        hint,
                    ));
                }
                Ok(())
            }
        }
    }

    /// A tag or branch name that git accepts and that cannot be read as an option.
    fn git_ref(&self, field: &str, name: &str) -> Checked<()> {
        let reason = if name.is_empty() {
            "the name is empty"
        } else if name.len() > 200 {
            "the name is longer than 200 characters"
        } else if name.starts_with('-') {
            "the name starts with '-' and would be read as an option"
        } else if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
        {
            "the name contains a space, a control character or one of ~ ^ : ? * [ \\"
        } else if name.contains("..") || name.contains("@{") || name.contains("//") {
            "the name contains '..', '@{' or '//'"
        } else if name.starts_with(['/', '.'])
            || name.ends_with(['/', '.'])
            || name.ends_with(".lock")
        {
            "the name starts or ends with '/' or '.', or ends with '.lock'"
        } else {
            return Ok(());
        };
        Err(self.invalid(
            field,
            name,
            reason,
            "give a tag or branch name as git shows it, such as \"v1.2.0\" or \"main\"",
        ))
    }

    pub(super) fn local_path(&self, path: &str) -> Checked<()> {
        let hint = "give a path relative to the plugin folder that stays inside it, such as \
                    \"hello\" or \"lib/hello\"";
        let bytes = path.as_bytes();
        let reason = if path.is_empty() {
            "the path is empty"
        } else if path.chars().any(char::is_control) {
            "the path contains a NUL or control character"
        } else if path.starts_with(['/', '\\']) || Path::new(path).is_absolute() {
            "the path is absolute"
        } else if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            "the path starts with a drive prefix"
        } else if path.split(['/', '\\']).any(|part| part == "..") {
            "the path contains a '..' component and could leave the plugin folder"
        } else if path
            .rsplit(['/', '\\'])
            .next()
            .is_none_or(|last| last.is_empty() || last == ".")
        {
            "the path names a folder, not a library file"
        } else {
            return Ok(());
        };
        Err(self.invalid("source.path", path, reason, hint))
    }

    fn git_remote(&self, url: &str) -> Checked<()> {
        const SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];
        let hint = "give a git remote such as \"https://example.com/me/hello.git\" or \
                    \"git@example.com:me/hello.git\"";
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.invalid(
                "source.path",
                url,
                "the git remote contains whitespace or control characters",
                hint,
            ));
        }
        let with_scheme = SCHEMES.iter().any(|scheme| {
            url.len() > scheme.len()
                && url.is_char_boundary(scheme.len())
                && url[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
        // scp-like syntax: user@host:path
        let scp_like = url
            .split_once('@')
            .and_then(|(user, rest)| rest.split_once(':').map(|(host, path)| (user, host, path)))
            .is_some_and(|(user, host, path)| {
                !user.is_empty()
                    && !user.starts_with('-')
                    && !user.contains(['/', ':'])
                    && !host.is_empty()
                    && !host.contains(['/', '@'])
                    && !path.is_empty()
            });
        if with_scheme || scp_like {
            Ok(())
        } else {
            Err(self.invalid(
                "source.path",
                url,
                "not a git remote (expected https://, http://, ssh://, git://, file:// or \
                 user@host:path)",
                hint,
            ))
        }
    }

    fn http_services(&self, raw: RawHttpServices) -> Checked<HttpServices> {
        self.identifier("http_services.driver", &raw.driver, "driver name")?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        // (method, route with parameter names erased) -> index of first use
        let mut seen: HashMap<(HttpMethod, String), usize> = HashMap::new();
        for (i, route) in raw.routes.into_iter().enumerate() {
            let at = format!("http_services.routes[{i}]");
            let shape = self.route_pattern(&format!("{at}.route"), &route.route)?;
            let method = self.method(&format!("{at}.method"), &route.method)?;
            self.label(&format!("{at}.label"), &route.label)?;
            if let Some(first) = seen.insert((method, shape), i) {
                return Err(self.invalid(
                    at,
                    &format!("{method} {}", route.route),
                    format!(
                        "same method and route as http_services.routes[{first}] (parameter \
                         names do not tell routes apart)"
                    ),
                    "remove the duplicate or change its method or route",
                ));
            }
            routes.push(Route {
                route: route.route,
                method,
                label: route.label,
            });
        }
        Ok(HttpServices {
            driver: raw.driver,
            routes,
        })
    }

    /// Checks a route pattern; returns it with parameter names erased, for
    /// duplicate detection.
    fn route_pattern(&self, field: &str, route: &str) -> Checked<String> {
        let hint = "write a path such as \"/api/plugin/items/:id\": it starts with '/', and each \
                    segment is either literal (letters, digits, '.', '_', '~', '-') or a \
                    parameter written :name or {name}";
        let fail = |reason: String| Err(self.invalid(field, route, reason, hint));
        if route.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("the route contains whitespace or control characters".into());
        }
        let Some(rest) = route.strip_prefix('/') else {
            return fail("the route does not start with '/'".into());
        };
        if rest.is_empty() {
            return Ok("/".into());
        }
        let mut shape = String::new();
        let mut params = HashSet::new();
        for segment in rest.split('/') {
            let param = segment
                .strip_prefix(':')
                .or_else(|| segment.strip_prefix('{')?.strip_suffix('}'));
            if let Some(param) = param {
                if !is_param_name(param) {
                    return fail(format!(
                        "bad parameter {segment:?}: a parameter name is a letter or '_' \
                         followed by letters, digits or '_'"
                    ));
                }
                if !params.insert(param) {
                    return fail(format!("parameter {param:?} appears twice"));
                }
                shape.push_str("/{}");
            } else if segment.is_empty() {
                return fail("the route has an empty segment (doubled or trailing '/')".into());
            } else if segment == ".." || segment == "." {
                return fail(format!("the route has a {segment:?} segment"));
            } else if let Some(c) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
            {
                return fail(format!(
                    "segment {segment:?} contains {c:?}, which is not allowed"
                ));
            } else {
                shape.push('/');
                shape.push_str(segment);
            }
        }
        Ok(shape)
    }

    fn method(&self, field: &str, value: &str) -> Checked<HttpMethod> {
        if let Some(method) = HttpMethod::ALL.into_iter().find(|m| m.as_str() == value) {
            return Ok(method);
        }
        let all = HttpMethod::ALL.map(HttpMethod::as_str).join(", ");
        let err = match HttpMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(value))
        {
            Some(method) => self.invalid(
                field,
                value,
                "HTTP methods must be written in uppercase",
                format!("write it uppercase: \"{method}\""),
            ),
            None => self.invalid(
                field,
                value,
                "not a supported HTTP method",
                format!("use one of {all}"),
            ),
        };
        Err(err)
    }

    fn label(&self, field: &str, value: &str) -> Checked<()> {
        let hint = "use letters, digits, '.', '_', ':' or '-', e.g. \"plugin.get\"";
        let reason = if value.is_empty() {
            "the label is empty".to_string()
        } else if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            format!("the label contains {c:?}, which is not allowed")
        } else {
            return Ok(());
        };
        Err(self.invalid(field, value, reason, hint))
    }

    fn requires(&self, raw: RawRequires) -> Checked<Requires> {
        let host = semver::VersionReq::parse(&raw.host).map_err(|err| {
            self.invalid(
                "requires.host",
                &raw.host,
                format!("not a SemVer version requirement ({err})"),
                "write a requirement such as \">=0.1, <2\" or \"^1.2\"",
            )
        })?;
        Ok(Requires { host })
    }

    fn sha256(&self, value: String) -> Checked<String> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(value.to_ascii_lowercase());
        }
        let reason = if value.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("{} hex characters, expected exactly 64", value.len())
        } else {
            "contains characters that are not hexadecimal digits".to_string()
        };
        Err(self.invalid(
            "sha256",
            &value,
            reason,
            "write the SHA-256 digest of the shared library as 64 hex characters \
             (e.g. the first word of `sha256sum libhello.so`)",
        ))
    }
}

/// 40 hex digits (a SHA-1 repository) or 64 (a SHA-256 repository).
fn is_full_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value as shown in an error: cut after [`MAX_SHOWN_VALUE`] characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_VALUE) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
}
