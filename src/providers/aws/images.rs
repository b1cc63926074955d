//! Image names a playbook may use on AWS, and how each becomes an AMI.
//!
//! A known name (`ubuntu-22.04`) is looked up with `DescribeImages` among the
//! publisher's own images (Canonical is account 099720109477), newest first;
//! when that finds nothing, the publisher's SSM public parameter is passed to
//! `RunInstances` as `resolve:ssm:...`, which EC2 resolves itself. An AMI id
//! (`ami-...`) or an explicit `resolve:ssm:...` is used as given.

use aws_sdk_ec2::types::Image;

use super::errors::code;
use super::{AwsProvider, filter};
use crate::providers::{ImageInfo, ProviderError, ProviderResult};

/// An image family labrun knows by name.
#[derive(Debug, PartialEq, Eq)]
pub struct KnownImage {
    pub name: &'static str,
    /// The publisher's AWS account.
    pub owner: &'static str,
    /// `DescribeImages` name filter (`*` wildcards).
    pub name_pattern: &'static str,
    /// The publisher's SSM public parameter for the current AMI.
    pub ssm_parameter: &'static str,
    /// The login user of the image.
    pub user: &'static str,
    pub detail: &'static str,
}

const CANONICAL: &str = "099720109477";
const DEBIAN: &str = "136693071363";

pub const KNOWN: &[KnownImage] = &[
    KnownImage {
        name: "ubuntu-22.04",
        owner: CANONICAL,
        name_pattern: "ubuntu/images/hvm-ssd*/ubuntu-jammy-22.04-amd64-server-*",
        ssm_parameter: "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        user: "ubuntu",
        detail: "Canonical Ubuntu 22.04 LTS (jammy), amd64: the newest AMI at launch",
    },
    KnownImage {
        name: "ubuntu-24.04",
        owner: CANONICAL,
        name_pattern: "ubuntu/images/hvm-ssd*/ubuntu-noble-24.04-amd64-server-*",
        ssm_parameter: "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        user: "ubuntu",
        detail: "Canonical Ubuntu 24.04 LTS (noble), amd64: the newest AMI at launch",
    },
    KnownImage {
        name: "ubuntu-20.04",
        owner: CANONICAL,
        name_pattern: "ubuntu/images/hvm-ssd*/ubuntu-focal-20.04-amd64-server-*",
        ssm_parameter: "/aws/service/canonical/ubuntu/server/20.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        user: "ubuntu",
        detail: "Canonical Ubuntu 20.04 LTS (focal), amd64: the newest AMI at launch",
    },
    KnownImage {
        name: "debian-12",
        owner: DEBIAN,
        name_pattern: "debian-12-amd64-*",
        ssm_parameter: "/aws/service/debian/release/12/latest/amd64",
        user: "admin",
        detail: "Debian 12 (bookworm), amd64: the newest AMI at launch",
    },
];

/// What a playbook's `image` means on AWS.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// Used as given: an AMI id or a `resolve:ssm:` reference.
    Literal(String),
    Known(&'static KnownImage),
}

pub fn parse(image: &str) -> ProviderResult<ImageRef> {
    if let Some(k) = KNOWN.iter().find(|k| k.name == image) {
        return Ok(ImageRef::Known(k));
    }
    if is_ami_id(image) || image.starts_with("resolve:ssm:/") {
        return Ok(ImageRef::Literal(image.to_string()));
    }
    Err(ProviderError::Invalid(format!(
        "unknown image '{image}' on aws: use one of {}, an AMI id (ami-0123456789abcdef0) \
         or resolve:ssm:/PARAMETER",
        KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
    )))
}

fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

/// The login user for an image as the playbook named it (`ubuntu` for AMI ids).
pub fn login_user(image: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|k| k.name == image)
        .map(|k| k.user)
        .unwrap_or("ubuntu")
}

/// The newest available image (creation dates are ISO 8601, so they sort as text).
pub fn newest(images: &[Image]) -> Option<&Image> {
    images
        .iter()
        .filter(|i| i.image_id().is_some())
        .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
}

pub fn infos() -> Vec<ImageInfo> {
    KNOWN
        .iter()
        .map(|k| ImageInfo {
            name: k.name.to_string(),
            ready: true,
            detail: format!("{} (login user {})", k.detail, k.user),
        })
        .collect()
}

impl AwsProvider {
    /// The `ImageId` for `RunInstances`.
    pub(super) async fn resolve_image(&self, image: &str) -> ProviderResult<String> {
        let known = match parse(image)? {
            ImageRef::Literal(id) => return Ok(id),
            ImageRef::Known(k) => k,
        };
        let mut cache = self.resolved_images.lock().await;
        if let Some(id) = cache.get(image) {
            return Ok(id.clone());
        }
        let found = self
            .ec2
            .describe_images()
            .owners(known.owner)
            .filters(filter("name", &[known.name_pattern]))
            .filters(filter("architecture", &["x86_64"]))
            .filters(filter("state", &["available"]))
            .send()
            .await;
        let id = match found {
            Ok(out) => newest(out.images()).and_then(|i| i.image_id().map(String::from)),
            Err(e) if code(&e) == Some("UnauthorizedOperation") => None,
            Err(e) => return Err(self.api(format!("looking up the newest {image} image"), e)),
        };
        let id = match id {
            Some(id) => {
                self.progress(&format!("{image} is {id} in {}", self.region));
                id
            }
            None => {
                self.progress(&format!(
                    "no {image} image listed; EC2 resolves {} at launch",
                    known.ssm_parameter
                ));
                format!("resolve:ssm:{}", known.ssm_parameter)
            }
        };
        cache.insert(image.to_string(), id.clone());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_ssm_references_parse() {
        assert_eq!(
            parse("ubuntu-22.04").unwrap(),
            ImageRef::Known(&KNOWN[0]),
            "ubuntu-22.04 is Canonical's jammy"
        );
        assert_eq!(KNOWN[0].owner, "099720109477");
        assert_eq!(
            parse("ami-0abcdef1234567890").unwrap(),
            ImageRef::Literal("ami-0abcdef1234567890".into())
        );
        assert_eq!(
            parse("resolve:ssm:/my/param").unwrap(),
            ImageRef::Literal("resolve:ssm:/my/param".into())
        );
        for bad in ["ubuntu", "ami-xyz", "ami-", "debian-12 ", "centos-7"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("ubuntu-22.04, ubuntu-24.04"), "{bad}: {e}");
        }
        assert_eq!(login_user("debian-12"), "admin");
        assert_eq!(login_user("ami-0abcdef1234567890"), "ubuntu");
    }

    #[test]
    fn newest_image_wins() {
        let img = |id: &str, date: &str| Image::builder().image_id(id).creation_date(date).build();
        let list = [
            img("ami-1", "2024-03-01T10:00:00.000Z"),
            img("ami-2", "2025-01-15T10:00:00.000Z"),
            img("ami-3", "2023-12-31T23:59:59.000Z"),
        ];
        assert_eq!(newest(&list).unwrap().image_id(), Some("ami-2"));
        assert!(newest(&[]).is_none());
    }
}
