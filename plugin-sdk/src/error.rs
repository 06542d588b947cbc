//! Errors a plugin function may return: anything that converts into a [`PluginError`].

use plugin_abi::{ErrorKind, PluginError};

/// An error a plugin function may return.
///
/// A function exported with [`export_plugin!`](crate::export_plugin) may return
/// `Result<_, E>` for any `E` that implements this trait:
///
/// - [`PluginError`] itself (any `std::error::Error` converts into it with `?`, as kind
///   `other`; [`ResultExt::kind`](crate::ResultExt::kind) picks another kind);
/// - `anyhow::Error`, with the `anyhow` feature: the whole chain is kept as text;
/// - `Box<dyn std::error::Error + Send + Sync>`;
/// - your own error type, by implementing this trait, which lets each variant pick its kind:
///
/// ```
/// use plugin_sdk::{export_plugin, Context, ErrorKind, IntoPluginError, PluginError};
///
/// #[derive(Debug)]
/// enum GreetError {
///     NoName,
///     Io(std::io::Error),
/// }
///
/// impl From<std::io::Error> for GreetError {
///     fn from(err: std::io::Error) -> Self {
///         GreetError::Io(err)
///     }
/// }
///
/// impl IntoPluginError for GreetError {
///     fn into_plugin_error(self) -> PluginError {
///         match self {
///             GreetError::NoName => PluginError::invalid_input("set `name`"),
///             GreetError::Io(err) => PluginError::new(ErrorKind::Other, err.to_string()),
///         }
///     }
/// }
///
/// fn execute(ctx: &Context<'_>) -> Result<(), GreetError> {
///     let name: String = ctx.get("name").ok().flatten().ok_or(GreetError::NoName)?;
///     std::fs::metadata(&name)?;
///     Ok(())
/// }
///
/// export_plugin!(execute);
/// ```
pub trait IntoPluginError {
    /// The error as the host will see it.
    fn into_plugin_error(self) -> PluginError;
}

impl IntoPluginError for PluginError {
    fn into_plugin_error(self) -> PluginError {
        self
    }
}

impl IntoPluginError for Box<dyn std::error::Error + Send + Sync> {
    fn into_plugin_error(self) -> PluginError {
        let mut message = self.to_string();
        let mut source = self.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        PluginError::new(ErrorKind::Other, message)
    }
}

#[cfg(feature = "anyhow")]
impl IntoPluginError for anyhow::Error {
    /// Kind `other`, unless the chain holds a [`PluginError`]'s kind through
    /// [`KindError`]; the message is the whole chain, `outer: inner: root`.
    fn into_plugin_error(self) -> PluginError {
        let kind = self
            .chain()
            .find_map(|e| e.downcast_ref::<KindError>().map(|k| k.0))
            .unwrap_or(ErrorKind::Other);
        PluginError::new(kind, format!("{self:#}"))
    }
}

/// An [`ErrorKind`] as an error, to put into an `anyhow` chain:
/// `Err(anyhow::Error::new(KindError(ErrorKind::NotFound)).context("no such user"))`.
#[cfg(feature = "anyhow")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindError(pub ErrorKind);

#[cfg(feature = "anyhow")]
impl std::fmt::Display for KindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(feature = "anyhow")]
impl std::error::Error for KindError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boxed_error_keeps_its_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("reading the config")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Outer(std::io::Error::other("disk on fire")));
        let err = boxed.into_plugin_error();
        assert_eq!(err.kind, ErrorKind::Other);
        assert_eq!(err.message(), "reading the config: disk on fire");
    }

    #[cfg(feature = "anyhow")]
    #[test]
    fn an_anyhow_chain_keeps_its_text_and_a_kind_it_carries() {
        use anyhow::Context as _;
        let err: anyhow::Error = Err::<(), _>(std::io::Error::other("no such file"))
            .context("opening users.json")
            .unwrap_err();
        let plain = err.into_plugin_error();
        assert_eq!(plain.kind, ErrorKind::Other);
        assert_eq!(plain.message(), "opening users.json: no such file");

        let kinded = anyhow::Error::new(KindError(ErrorKind::NotFound))
            .context("user 42")
            .into_plugin_error();
        assert_eq!(kinded.kind, ErrorKind::NotFound);
        assert_eq!(kinded.message(), "user 42: not_found");
    }
}
