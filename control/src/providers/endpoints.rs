//! Where a ready node answers, as its agent reports it.
//!
//! Agents run on providers' machines, so what they report is untrusted: it reaches the
//! customer's connection details (a kubeconfig, the Ray address) and the bootstraps of the
//! cluster's other nodes. Only values that are plainly an address get in: `host:port`, or a
//! `scheme://host[:port][/path]` URL of a scheme a node serves, in printable ASCII. Anything
//! else is refused before it is stored, so every reader downstream holds an [`Endpoints`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Schemes a node's services answer on.
const SCHEMES: &[&str] = &["http", "https", "ray"];
/// Longest endpoint, in bytes.
const MAX_LEN: usize = 255;
/// Most endpoints one node may report, and the longest name of one.
const MAX_ENDPOINTS: usize = 16;
const MAX_NAME_LEN: usize = 32;

/// One address a node answers at: `host:port` or `scheme://host[:port][/path]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(String);

impl Endpoint {
    /// The endpoint, or why it is not one (written for the agent's operator).
    pub fn parse(s: &str) -> std::result::Result<Endpoint, &'static str> {
        if s.is_empty() || s.len() > MAX_LEN {
            return Err("must be 1 to 255 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII, without spaces or control characters");
        }
        let (rest, is_url) = match s.split_once("://") {
            Some((scheme, rest)) if SCHEMES.contains(&scheme) => (rest, true),
            Some(_) => return Err("must be host:port or an http, https or ray URL"),
            None => (s, false),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !path.is_empty() && !is_url {
            return Err("a path needs a URL: scheme://host:port/path");
        }
        if !path.bytes().all(is_path_byte) {
            return Err("the path has a character a URL path cannot hold");
        }
        let (host, port) = split_host_port(authority)?;
        check_host(host)?;
        match port {
            Some(port) if port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            Some(_) => return Err("the port must be a number from 1 to 65535"),
            None if is_url => {}
            None => return Err("must name a port: host:port"),
        }
        Ok(Endpoint(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Endpoint {
    type Error = &'static str;
    fn try_from(s: String) -> std::result::Result<Endpoint, &'static str> {
        Endpoint::parse(&s)
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.0
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3986 path and query characters: unreserved, percent escapes, sub-delimiters, `:@/?`.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b)
}

/// `host` and the port text after its colon, if any. An IPv6 host is bracketed (`[::1]:80`).
fn split_host_port(authority: &str) -> std::result::Result<(&str, Option<&str>), &'static str> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address needs its closing bracket")?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err("the host is not an IPv6 address");
        }
        return match after {
            "" => Ok((authority, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((&authority[..host.len() + 2], Some(port))),
                None => Err("must be [address]:port"),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// A DNS name, an IPv4 address or a bracketed IPv6 one (checked by [`split_host_port`]).
/// Names may hold `_`, as machine names often do (the simulator's agents use device ids).
fn check_host(host: &str) -> std::result::Result<(), &'static str> {
    if host.starts_with('[') {
        return Ok(());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("the host is not an IPv4 address"),
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("the host must be a DNS name or an IP address");
    }
    Ok(())
}

/// A node's endpoints by name (`ray`, `api_server`, `dashboard`, …): at most 16, each name
/// 1 to 32 of `a-z`, `0-9`, `_` and `-`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>")]
pub struct Endpoints(BTreeMap<String, Endpoint>);

impl Endpoints {
    /// The endpoints an agent reported, or [`Error::InvalidEndpoint`] naming the first
    /// that is not one.
    pub fn parse(reported: &serde_json::Map<String, serde_json::Value>) -> Result<Endpoints> {
        if reported.len() > MAX_ENDPOINTS {
            return Err(Error::InvalidEndpoint {
                name: String::new(),
                reason: "a node may report at most 16 endpoints",
            });
        }
        let mut endpoints = BTreeMap::new();
        for (name, value) in reported {
            let refused = |reason| Error::InvalidEndpoint {
                name: name.chars().take(MAX_NAME_LEN).collect(),
                reason,
            };
            if !is_name(name) {
                return Err(refused(
                    "names are 1 to 32 of a-z, 0-9, _ and - (e.g. api_server)",
                ));
            }
            let value = value
                .as_str()
                .ok_or_else(|| refused("must be a string: host:port or a URL"))?;
            endpoints.insert(name.clone(), Endpoint::parse(value).map_err(refused)?);
        }
        Ok(Endpoints(endpoints))
    }

    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl TryFrom<BTreeMap<String, String>> for Endpoints {
    type Error = Error;
    fn try_from(map: BTreeMap<String, String>) -> Result<Endpoints> {
        let reported = map
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        Endpoints::parse(&reported)
    }
}

// GraphQL shows a node's endpoints as the `JSON` object REST answers with.
#[cfg(feature = "graphql")]
impl async_graphql::OutputType for Endpoints {
    fn type_name() -> std::borrow::Cow<'static, str> {
        <async_graphql::Json<Self> as async_graphql::OutputType>::type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <async_graphql::Json<Self> as async_graphql::OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _: &async_graphql::ContextSelectionSet<'_>,
        _: &async_graphql::Positioned<async_graphql::parser::types::Field>,
    ) -> async_graphql::ServerResult<async_graphql::Value> {
        Ok(async_graphql::to_value(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_and_urls_parse() {
        for good in [
            "10.0.0.5:6379",
            "node-1.example.com:22",
            "[2001:db8::1]:6443",
            "https://10.0.0.1:6443",
            "https://[::1]:6443/",
            "dev_01kx2m9q:6379",
            "http://dev_01kx2m9q:8265",
            "ray://head.local:10001",
            "http://h:8888/lab?token=abc%20d",
            "https://api.example.com",
        ] {
            assert_eq!(
                Endpoint::parse(good).map(|e| e.to_string()),
                Ok(good.into())
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let hostile =
            "https://x:6443\n- name: ops\n  user:\n    exec: {command: sh}\ncurrent-context: ops";
        for bad in [
            "",
            hostile,
            "https://x:6443 current-context",
            "x:6443\r",
            "10.0.0.5",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            "10.0.0.5:http",
            "999.0.0.1:80",
            "file:///etc/passwd",
            "javascript://x:1",
            "host/path:80",
            "https://x:6443/a b",
            "https://x:6443/#frag",
            "https://user@x:6443",
            "https://-x:6443",
            "::1:6443",
            "[::1:6443",
            "[nonsense]:6443",
            "héllo:80",
            &format!("{}:80", "a".repeat(300)),
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_report_is_refused_whole_with_the_endpoint_named() {
        let ok = json!({"ray": "10.0.0.5:6379", "dashboard": "http://10.0.0.5:8265"});
        let parsed = Endpoints::parse(ok.as_object().unwrap()).unwrap();
        assert_eq!(parsed.get("ray").unwrap().as_str(), "10.0.0.5:6379");
        for (bad, name) in [
            (
                json!({"ray": "10.0.0.5:6379", "api_server": "x\n:1"}),
                "api_server",
            ),
            (json!({"ray": 6379}), "ray"),
            (json!({"Bad Name\n": "10.0.0.5:1"}), "Bad Name\n"),
            (json!({"": "10.0.0.5:1"}), ""),
        ] {
            match Endpoints::parse(bad.as_object().unwrap()) {
                Err(Error::InvalidEndpoint { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let many: serde_json::Map<_, _> = (0..17)
            .map(|i| (format!("e{i}"), json!("10.0.0.1:1")))
            .collect();
        assert!(Endpoints::parse(&many).is_err());
    }

    #[test]
    fn stored_endpoints_read_back_only_when_valid() {
        let ok: Endpoints = serde_json::from_str(r#"{"ssh":"10.0.0.1:22"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"ssh":"10.0.0.1:22"}"#
        );
        assert!(serde_json::from_str::<Endpoints>(r#"{"api_server":"x:1\nuser: y"}"#).is_err());
    }
}
