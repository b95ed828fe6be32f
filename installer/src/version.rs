//! Image references: what --image says, split for the chart's values.

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
}
