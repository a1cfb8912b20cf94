//! Where to dial: `PORT` (meaning 127.0.0.1) or `HOST:PORT`, IPv4, IPv6 or a name.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;

use thiserror::Error;

/// The address of the peer's listener, resolved afresh on every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

/// Why typed-in text is not a target.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("no target given; type a port number such as 7000 or HOST:PORT")]
    Empty,
    #[error("{0:?} is not a port number from 1 to 65535")]
    BadPort(String),
    #[error("{0:?} is not PORT or HOST:PORT (write IPv6 addresses as [::1]:PORT)")]
    Malformed(String),
}

impl Target {
    /// Every address the host name resolves to, in the resolver's order.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        Ok(addrs)
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Target {
                host: "127.0.0.1".into(),
                port: parse_port(text)?,
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(TargetError::BadPort("0".into()));
            }
            return Ok(Target {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(TargetError::Malformed(text.into()));
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid_host {
            return Err(TargetError::Malformed(text.into()));
        }
        Ok(Target {
            host: host.into(),
            port: parse_port(port)?,
        })
    }
}

fn parse_port(text: &str) -> Result<u16, TargetError> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(TargetError::BadPort(text.into())),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> String {
        text.parse::<Target>().unwrap().to_string()
    }

    #[test]
    fn parses_port_and_host_port() {
        assert_eq!(target("7000"), "127.0.0.1:7000");
        assert_eq!(target(" 7000\n"), "127.0.0.1:7000");
        assert_eq!(target("10.0.0.2:80"), "10.0.0.2:80");
        assert_eq!(target("[::1]:7000"), "[::1]:7000");
        assert_eq!(target("bob.example:7000"), "bob.example:7000");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("".parse::<Target>(), Err(TargetError::Empty));
        assert!(matches!(
            "0".parse::<Target>(),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            "70000".parse::<Target>(),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            "host:".parse::<Target>(),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            "::1:7000".parse::<Target>(),
            Err(TargetError::Malformed(_))
        ));
        assert!(matches!(
            "bob".parse::<Target>(),
            Err(TargetError::Malformed(_))
        ));
        assert!(matches!(
            "a b:1".parse::<Target>(),
            Err(TargetError::Malformed(_))
        ));
    }
}
