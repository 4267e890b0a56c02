//! Objections (异议): the provider's answer deadline.

use time::Date;

use crate::policy::Policy;

/// Days a providing department has to answer an objection
/// (征信业管理条例 第二十五条: 自收到异议之日起20日内).
pub const OBJECTION_ANSWER_DAYS: i64 = 20;

impl Policy {
    /// Last day for the provider to answer an objection filed on `filed_on`.
    pub fn objection_due(filed_on: Date) -> Date {
        filed_on
            .checked_add(time::Duration::days(OBJECTION_ANSWER_DAYS))
            .unwrap_or(Date::MAX)
    }
}
