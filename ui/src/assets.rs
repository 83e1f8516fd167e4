//! The web app, embedded at compile time from `ui/web/dist` (built by `npm run build` in
//! `ui/web`; the built files are committed so `cargo build` needs no Node.js). File names
//! are fixed by `ui/web/vite.config.ts`, so this list never changes with a rebuild.

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

const INDEX: &[u8] = include_bytes!("../web/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../web/dist/assets/app.js");
const APP_CSS: &[u8] = include_bytes!("../web/dist/assets/app.css");

/// Serves a built file, `index.html` for any other path (the app routes on the client),
/// and 404 for a missing file under `/assets/`.
pub async fn serve(uri: Uri) -> Response {
    let (body, kind): (&'static [u8], &str) = match uri.path() {
        "/assets/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/assets/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        p if p.starts_with("/assets/") => {
            return (StatusCode::NOT_FOUND, "no such asset").into_response();
        }
        _ => (INDEX, "text/html; charset=utf-8"),
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}
