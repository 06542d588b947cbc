//! The OpenAPI 3.1 document of the API, generated from the handlers with utoipa, served at
//! `GET /api/v1/openapi.json` without a token.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::handlers;

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "plugin-http management API",
        description = "List, describe, call, load, unload, reload, enable and disable plugins, \
                       and install signed packages. Every route but this document requires \
                       `Authorization: Bearer <token>` when the server has a token. Errors \
                       are `{ \"error\": { \"kind\", \"message\" } }`."
    ),
    paths(
        handlers::list,
        handlers::routes,
        handlers::describe,
        handlers::execute,
        handlers::load,
        handlers::unload,
        handlers::reload,
        handlers::enable,
        handlers::disable,
        document,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "plugins", description = "The plugins of the manager"),
        (name = "packages", description = "Installing signed packages"),
        (name = "meta", description = "This document"),
    )
)]
pub(crate) struct ApiDoc;

/// The package upload route, described when it is built in.
#[cfg(feature = "uploads")]
#[derive(OpenApi)]
#[openapi(paths(super::packages::upload))]
struct PackagesDoc;

/// Declares the `bearer` security scheme the routes name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The OpenAPI document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    #[cfg_attr(not(feature = "uploads"), allow(unused_mut))]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "uploads")]
    doc.merge(PackagesDoc::openapi());
    Json(doc)
}
