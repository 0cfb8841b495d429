//! Availability Zone names to regions, for every partition and zone type.
//!
//! A wrong answer here would make nodereaper ask EC2 in the wrong region,
//! where an alive instance is unknown and looks gone. So the parser accepts
//! only names it fully understands and answers `None` otherwise: such an
//! instance is not checked, and never counted as gone.

/// The region of an Availability Zone name:
/// - standard zones: `us-east-1a`, `us-gov-west-1b`, `cn-north-1a`,
///   `us-iso-east-1a`, `us-isob-east-1c`, `eu-central-2b`;
/// - Local Zones: `us-west-2-lax-1a` (region `us-west-2`);
/// - Wavelength Zones: `us-east-1-wl1-bos-wlz-1`.
///
/// Zone ids (`use1-az1`), regions without a zone letter and anything else
/// give `None`.
pub fn region_of_zone(zone: &str) -> Option<String> {
    let parts: Vec<&str> = zone.split('-').collect();
    // The region number is the first part that starts with a digit; the
    // parts before it are the region's words (`us`, `gov`, `west`).
    let at = parts
        .iter()
        .position(|p| p.starts_with(|c: char| c.is_ascii_digit()))?;
    if at < 2 || !parts[..at].iter().all(|p| is_lower_word(p)) {
        return None;
    }
    let number_part = parts[at];
    let digits = number_part.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = number_part.split_at(digits);
    let suffix = &parts[at + 1..];
    let well_formed = if suffix.is_empty() {
        // Standard zone: exactly one zone letter after the region number.
        rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase())
    } else {
        // Local or Wavelength Zone: the region number stands alone, then a
        // location (`lax-1a`, `wl1-bos-wlz-1`) of lowercase letters and digits.
        rest.is_empty()
            && suffix.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && suffix
                .last()
                .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()))
    };
    well_formed.then(|| format!("{}-{number}", parts[..at].join("-")))
}

fn is_lower_word(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::region_of_zone;

    #[test]
    fn every_partition_and_zone_type() {
        for (zone, region) in [
            ("us-east-1a", "us-east-1"),
            ("eu-central-2b", "eu-central-2"),
            ("ap-southeast-4c", "ap-southeast-4"),
            ("us-gov-west-1a", "us-gov-west-1"),
            ("us-gov-east-1c", "us-gov-east-1"),
            ("cn-north-1a", "cn-north-1"),
            ("cn-northwest-1b", "cn-northwest-1"),
            ("us-iso-east-1a", "us-iso-east-1"),
            ("us-isob-east-1c", "us-isob-east-1"),
            ("eu-isoe-west-1a", "eu-isoe-west-1"),
            ("us-west-2-lax-1a", "us-west-2"),
            ("us-east-1-bos-1a", "us-east-1"),
            ("us-east-1-wl1-bos-wlz-1", "us-east-1"),
            ("ap-northeast-1-wl1-nrt-wlz-1", "ap-northeast-1"),
        ] {
            assert_eq!(region_of_zone(zone).as_deref(), Some(region), "{zone}");
        }
    }

    #[test]
    fn unparseable_zones_are_not_guessed() {
        for zone in [
            "",
            "us-east-1",   // a region, not a zone
            "use1-az1",    // a zone id
            "us-east-1ab", // two letters
            "us-east-1A",  // upper case
            "east-1a",     // one word
            "US-east-1a",
            "us-east-1-",
            "us-east-1a-lax-1a",
            "us-west-2-lax-",  // empty location part
            "us-west-2-lax-a", // location not ending in a number
            "us--east-1a",
            "nonsense",
            "-1a",
        ] {
            assert_eq!(region_of_zone(zone), None, "{zone:?}");
        }
    }
}
