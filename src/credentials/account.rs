//! The AWS account id that newer SDKs use for account-based endpoints: what a valid one
//! looks like, and how to read it out of an ARN (`iam/info`'s `InstanceProfileArn`, STS's
//! `AssumedRoleUser/Arn`, an `[[assume]]` `role_arn`).
//!
//! An account id is exactly 12 ASCII digits. Nothing else is accepted anywhere, so an id can
//! go unquoted into every output (INI line, shell, PowerShell, cmd, JSON) without escaping.

/// True for exactly 12 ASCII digits.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The account field of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`), when it
/// is a valid account id.
pub fn account_of_arn(arn: &str) -> Option<String> {
    let mut fields = arn.splitn(6, ':');
    if fields.next() != Some("arn") {
        return None;
    }
    let account = fields.nth(3)?;
    fields.next()?;
    is_account_id(account).then(|| account.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_account_of_every_arn_kind_we_meet() {
        let arns = [
            "arn:aws:iam::123456789012:instance-profile/web",
            "arn:aws:sts::222222222222:assumed-role/efgh/imds-credd-i-0",
            "arn:aws-us-gov:iam::333333333333:role/path/to/role",
        ];
        let accounts: Vec<_> = arns.iter().map(|a| account_of_arn(a)).collect();
        assert_eq!(
            accounts,
            [
                Some("123456789012".to_string()),
                Some("222222222222".to_string()),
                Some("333333333333".to_string())
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_an_arn_with_a_12_digit_account() {
        for bad in [
            "",
            "arn:aws:iam::12345678901:role/short",
            "arn:aws:iam::1234567890123:role/long",
            "arn:aws:iam::12345678901x:role/letter",
            "arn:aws:iam::123456789012",
            "nra:aws:iam::123456789012:role/x",
            "arn:aws:s3:::bucket",
        ] {
            assert_eq!(account_of_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn account_ids_are_exactly_twelve_digits() {
        assert!(is_account_id("000000000000"));
        assert!(!is_account_id("12345678901\n"));
        assert!(!is_account_id("١٢٣٤٥٦٧٨٩٠١٢"));
    }
}
