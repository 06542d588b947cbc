//! `POST /api/v1/packages`: install an uploaded, signed `.plg` package, and load it.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use plugin_package::{Installer, Origin};

use super::types::{InstallResponse, UploadQuery};
use super::{blocking, is_check_error, lifecycle_error, rejected};
use crate::error::ApiError;
use crate::state::AppState;

/// The parts of an upload.
struct Upload {
    package: Vec<u8>,
    signature: Option<String>,
}

/// Installs an uploaded package, then loads the plugin if it is not active.
#[utoipa::path(
    post, path = "/api/v1/packages", tag = "packages",
    params(UploadQuery),
    request_body(content = inline(super::types::UploadForm), content_type = "multipart/form-data",
        description = "Part `package`: the .plg file; part `signature`: the text of its .minisig"),
    responses(
        (status = 201, description = "Installed and loaded", body = InstallResponse),
        (status = 400, description = "Not a multipart form with a `package` part", body = super::types::ErrorBody),
        (status = 403, description = "Uploads are disabled: no trusted keys configured", body = super::types::ErrorBody),
        (status = 413, description = "Body over the server's body limit"),
        (status = 422, description = "The package was refused (signature, contents, downgrade)", body = super::types::ErrorBody),
        (status = 401, description = "Missing or wrong token", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    form: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<InstallResponse>), ApiError> {
    // The whole form is read before any refusal: a client still sending a package it is
    // refused would otherwise see its connection closed instead of the answer.
    let upload = match form {
        Ok(form) => read_form(form).await,
        Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
    };
    if state.options.trusted_keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "uploads_disabled",
            "this server accepts no package uploads because it trusts no signing key; start it \
             with the publishers' public keys (`HttpOptions::trusted_keys`, or `plugctl serve \
             --key PUB`) to accept packages they signed",
        ));
    }
    let Query(query) = query.map_err(|r| rejected(r.status(), r.body_text()))?;
    let upload = upload?;
    let manager = state.manager.clone();
    let keys = state.options.trusted_keys.clone();
    let response = blocking("installing a package", move || {
        let installed = Installer::new(&manager)
            .trust_all(keys)
            .force(query.force)
            .install_bytes(
                &upload.package,
                upload.signature.as_deref(),
                Origin::Url("upload".into()),
            )
            .map_err(|err| package_error(&err))?;
        let name = installed.name.clone();
        if manager.get(&name).is_err() && !manager.is_disabled(&name) {
            match manager.load_plugin(&name) {
                Ok(()) | Err(plugin_host::Error::AlreadyLoaded { .. }) => {}
                Err(err) => {
                    let mut error = lifecycle_error(&err);
                    error.message = format!(
                        "plugin `{name}` {} was installed in {}, but loading it failed: {}",
                        installed.version,
                        installed.dir.display(),
                        error.message
                    );
                    return Err(error);
                }
            }
        }
        let state = manager
            .state(&name)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "discovered".to_owned());
        Ok(InstallResponse {
            name,
            version: installed.version.to_string(),
            previous: installed.previous.map(|v| v.to_string()),
            signed_by: installed.signed_by,
            upgraded: installed.upgraded.is_some(),
            drain: installed.upgraded.map(|u| u.drain.into()),
            state,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// Reads the `package` and `signature` parts; reads the whole form even when a part is
/// unexpected, so that the answer reaches a client still sending.
async fn read_form(mut form: Multipart) -> Result<Upload, ApiError> {
    let mut package = None;
    let mut signature = None;
    let mut unexpected = None;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or_default() {
            "package" => package = Some(field.bytes().await.map_err(form_error)?.to_vec()),
            "signature" => signature = Some(field.text().await.map_err(form_error)?),
            other => {
                unexpected.get_or_insert_with(|| other.to_owned());
                field.bytes().await.map_err(form_error)?;
            }
        }
    }
    if let Some(other) = unexpected {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!(
                "the upload has a part named `{other}`; send only the parts `package` (the \
                 .plg file) and `signature` (the text of its .minisig)"
            ),
        ));
    }
    let Some(package) = package else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "the upload has no `package` part; send the .plg file as the multipart/form-data \
             part `package`, and its signature as the part `signature`",
        ));
    };
    Ok(Upload { package, signature })
}

fn form_error(err: MultipartError) -> ApiError {
    rejected(
        err.status(),
        format!("reading the upload: {}", err.body_text()),
    )
}

/// The answer for a package the installer refused or failed to install.
fn package_error(err: &plugin_package::Error) -> ApiError {
    use plugin_package::Error as E;
    match err {
        E::Io { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "install_failed",
            err.to_string(),
        ),
        E::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            err.to_string(),
        ),
        E::Host(host) if !is_check_error(host) => ApiError::from_host(host),
        E::Host(host) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "package_refused",
            host.report(),
        ),
        _ => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "package_refused",
            err.to_string(),
        ),
    }
}
