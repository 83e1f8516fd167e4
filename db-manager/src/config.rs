//! Which database `katib db-manager` opens: `--db`, or Katib's environment variables, or
//! the embedded default.
//!
//! Precedence, first match wins:
//! 1. `--db <url>` or its environment twin `KATIB_DB_URL`;
//! 2. `DB_NAME=mysql|postgres` with Katib's variables (so Katib's manifests work
//!    unchanged): `DB_USER`, `DB_PASSWORD`, and `KATIB_MYSQL_DB_HOST|PORT|DATABASE` or
//!    `KATIB_POSTGRESQL_DB_HOST|PORT|DATABASE|SSL_MODE`, each with Katib's default;
//! 3. `sqlite://katib.db`.
//!
//! `SKIP_DB_INITIALIZATION` applies to all three, with Katib's rule: unset, empty or
//! `false` applies the migrations; any other value only checks that `observation_logs`
//! is there.

use crate::store::Init;

/// The default database when neither `--db` nor `DB_NAME` is given.
pub const DEFAULT_DB: &str = "sqlite://katib.db";

/// Where the database URL came from (for the start-up log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--db` / `KATIB_DB_URL`.
    Flag,
    /// `DB_NAME` and Katib's variables.
    KatibEnv,
    /// Nothing was given.
    Default,
}

/// The database to open.
#[derive(Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// A URL our stores accept (may hold a password: log it through `store::redact`).
    pub url: String,
    /// Where it came from.
    pub origin: Origin,
    /// What to do to the schema.
    pub init: Init,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTarget")
            .field("url", &crate::store::redact(&self.url))
            .field("origin", &self.origin)
            .field("init", &self.init)
            .finish()
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `DB_NAME` names no backend.
    #[error(
        "invalid DB_NAME {0:?}: set DB_NAME=mysql or DB_NAME=postgres (Katib's values), \
         or pass --db <url>"
    )]
    InvalidDbName(String),
    /// A port variable is not a port.
    #[error("invalid {name}={value:?}: expected a port number (1-65535)")]
    InvalidPort {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// Resolves the database from the `--db` flag (already merged with `KATIB_DB_URL` by
/// clap) and the environment, read through `env` (so tests need not touch the process
/// environment).
pub fn resolve(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<DbTarget, ConfigError> {
    // Katib's GetEnvOrDefault: an empty variable counts as unset.
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    let init = match var("SKIP_DB_INITIALIZATION").as_deref() {
        None | Some("false") => Init::Migrate,
        Some(_) => Init::CheckOnly,
    };
    if let Some(url) = flag {
        return Ok(DbTarget {
            url: url.to_owned(),
            origin: Origin::Flag,
            init,
        });
    }
    let Some(db_name) = var("DB_NAME") else {
        return Ok(DbTarget {
            url: DEFAULT_DB.to_owned(),
            origin: Origin::Default,
            init,
        });
    };
    let or = |name: &str, default: &str| var(name).unwrap_or_else(|| default.to_owned());
    let port = |name: &'static str, default: u16| match var(name) {
        None => Ok(default),
        Some(value) => value
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or(ConfigError::InvalidPort { name, value }),
    };
    let url = match db_name.as_str() {
        "mysql" => format!(
            "mysql://{}:{}@{}:{}/{}",
            encode(&or("DB_USER", "root")),
            encode(&or("DB_PASSWORD", "")),
            host(&or("KATIB_MYSQL_DB_HOST", "katib-mysql")),
            port("KATIB_MYSQL_DB_PORT", 3306)?,
            encode(&or("KATIB_MYSQL_DB_DATABASE", "katib")),
        ),
        "postgres" => format!(
            "postgres://{}:{}@{}:{}/{}?sslmode={}",
            encode(&or("DB_USER", "katib")),
            encode(&or("DB_PASSWORD", "")),
            host(&or("KATIB_POSTGRESQL_DB_HOST", "katib-postgres")),
            port("KATIB_POSTGRESQL_DB_PORT", 5432)?,
            encode(&or("KATIB_POSTGRESQL_DB_DATABASE", "katib")),
            encode(&or("KATIB_POSTGRESQL_SSL_MODE", "disable")),
        ),
        other => return Err(ConfigError::InvalidDbName(other.to_owned())),
    };
    Ok(DbTarget {
        url,
        origin: Origin::KatibEnv,
        init,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a password such
/// as `p@ss:w/rd` survives inside a URL (sqlx decodes it again).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A host for a URL: IPv6 literals get their brackets.
fn host(text: &str) -> String {
    if text.contains(':') && !text.starts_with('[') {
        format!("[{text}]")
    } else {
        text.to_owned()
    }
}

/// Parses a duration the way Katib's Go flags are written (`60s`, `1m30s`, `500ms`,
/// `2h`), or a plain number of seconds (`60`, `0.5`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {text:?}: use e.g. 60s, 1m30s, 500ms or a number of seconds");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds).map_err(|_| bad());
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |name| map.get(name).map(|value| (*value).to_owned())
    }

    #[test]
    fn flag_wins_over_katib_env() {
        let target = resolve(
            Some("sqlite:///tmp/x.db"),
            env(&[("DB_NAME", "mysql"), ("DB_PASSWORD", "test")]),
        )
        .expect("resolve");
        assert_eq!(target.url, "sqlite:///tmp/x.db");
        assert_eq!(target.origin, Origin::Flag);
        assert_eq!(target.init, Init::Migrate);
    }

    #[test]
    fn default_is_sqlite() {
        let target = resolve(None, env(&[("DB_NAME", "")])).expect("resolve");
        assert_eq!(target.url, DEFAULT_DB);
        assert_eq!(target.origin, Origin::Default);
    }

    #[test]
    fn katib_mysql_defaults_and_overrides() {
        let target = resolve(None, env(&[("DB_NAME", "mysql"), ("DB_PASSWORD", "test")])).expect("resolve");
        assert_eq!(target.url, "mysql://root:test@katib-mysql:3306/katib");
        assert_eq!(target.origin, Origin::KatibEnv);
        let target = resolve(
            None,
            env(&[
                ("DB_NAME", "mysql"),
                ("DB_USER", "katib"),
                ("DB_PASSWORD", "p@ss:w/rd %"),
                ("KATIB_MYSQL_DB_HOST", "::1"),
                ("KATIB_MYSQL_DB_PORT", "13306"),
                ("KATIB_MYSQL_DB_DATABASE", "katib_prod"),
            ]),
        )
        .expect("resolve");
        assert_eq!(
            target.url,
            "mysql://katib:p%40ss%3Aw%2Frd%20%25@[::1]:13306/katib_prod"
        );
        assert_eq!(
            crate::store::redact(&target.url),
            "mysql://katib:***@[::1]:13306/katib_prod"
        );
    }

    #[test]
    fn katib_postgres_defaults() {
        let target =
            resolve(None, env(&[("DB_NAME", "postgres"), ("DB_PASSWORD", "katib")])).expect("resolve");
        assert_eq!(
            target.url,
            "postgres://katib:katib@katib-postgres:5432/katib?sslmode=disable"
        );
        let target = resolve(
            None,
            env(&[
                ("DB_NAME", "postgres"),
                ("KATIB_POSTGRESQL_DB_HOST", "db"),
                ("KATIB_POSTGRESQL_DB_PORT", "6543"),
                ("KATIB_POSTGRESQL_DB_DATABASE", "k"),
                ("KATIB_POSTGRESQL_SSL_MODE", "prefer"),
            ]),
        )
        .expect("resolve");
        assert_eq!(target.url, "postgres://katib:@db:6543/k?sslmode=prefer");
    }

    #[test]
    fn skip_db_initialization_follows_katib() {
        for (value, init) in [
            ("false", Init::Migrate),
            ("", Init::Migrate),
            ("true", Init::CheckOnly),
            ("0", Init::CheckOnly),
        ] {
            let target = resolve(None, env(&[("SKIP_DB_INITIALIZATION", value)])).expect("resolve");
            assert_eq!(target.init, init, "{value:?}");
        }
    }

    #[test]
    fn bad_db_name_and_port() {
        assert_eq!(
            resolve(None, env(&[("DB_NAME", "oracle")])),
            Err(ConfigError::InvalidDbName("oracle".into()))
        );
        let err =
            resolve(None, env(&[("DB_NAME", "mysql"), ("KATIB_MYSQL_DB_PORT", "x")])).expect_err("bad port");
        assert_eq!(
            err.to_string(),
            "invalid KATIB_MYSQL_DB_PORT=\"x\": expected a port number (1-65535)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["", "s", "5x", "-1", "1m-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
