//! The daemon image must be the installer's version: the node label and
//! status annotation, the unload handshake and the manifests change
//! together, release by release.

/// An image reference split as a registry understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry and repository (`r.example:5000/a/b`).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:...`.
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> ImageRef {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (image, None),
        };
        // A ':' before the last '/' is a registry port, not a tag.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        ImageRef {
            repository: repository.to_string(),
            tag,
            digest,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error(
        "image {image} is version {tag}, but this accel-installer is version {ours}: use the \
         image of the same version, or pass --allow-version-mismatch"
    )]
    Mismatch {
        image: String,
        tag: String,
        ours: String,
    },
    #[error(
        "image {image} has no tag, so its version cannot be checked against this \
         accel-installer's ({ours}): give it as NAME:{ours} (NAME:{ours}@sha256:... to pin a \
         digest), or pass --allow-version-mismatch"
    )]
    NoTag { image: String, ours: String },
}

/// This installer's version (the workspace's).
pub const OURS: &str = env!("CARGO_PKG_VERSION");

/// Ok when `image`'s tag is `ours` or `v{ours}`.
pub fn check_image(image: &str, ours: &str) -> Result<(), VersionError> {
    match ImageRef::parse(image).tag {
        Some(tag) if tag == ours || tag.strip_prefix('v') == Some(ours) => Ok(()),
        Some(tag) => Err(VersionError::Mismatch {
            image: image.to_string(),
            tag,
            ours: ours.to_string(),
        }),
        None => Err(VersionError::NoTag {
            image: image.to_string(),
            ours: ours.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(repo: &str, tag: Option<&str>, digest: Option<&str>) -> ImageRef {
        ImageRef {
            repository: repo.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn parses_tag_digest_and_registry_port() {
        assert_eq!(ImageRef::parse("a/b:1.0"), r("a/b", Some("1.0"), None));
        assert_eq!(ImageRef::parse("r:5000/a/b"), r("r:5000/a/b", None, None));
        assert_eq!(
            ImageRef::parse("r:5000/a:v1"),
            r("r:5000/a", Some("v1"), None)
        );
        assert_eq!(
            ImageRef::parse("r:5000/a:v1@sha256:ab"),
            r("r:5000/a", Some("v1"), Some("sha256:ab"))
        );
        assert_eq!(
            ImageRef::parse("a@sha256:ab"),
            r("a", None, Some("sha256:ab"))
        );
    }

    #[test]
    fn accepts_only_the_same_version() {
        assert!(check_image("a/b:0.1.0", "0.1.0").is_ok());
        assert!(check_image("a/b:v0.1.0", "0.1.0").is_ok());
        assert!(check_image("r:5000/b:0.1.0@sha256:ab", "0.1.0").is_ok());
        let e = check_image("a/b:0.2.0", "0.1.0").unwrap_err().to_string();
        assert!(
            e.contains("version 0.2.0") && e.contains("version 0.1.0"),
            "{e}"
        );
        assert!(matches!(
            check_image("r:5000/b@sha256:ab", "0.1.0"),
            Err(VersionError::NoTag { .. })
        ));
        assert!(check_image("a/b:0.1.0-rc1", "0.1.0").is_err());
    }
}
