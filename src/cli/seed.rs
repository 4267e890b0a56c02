//! Sample and synthetic data: the quickstart's subjects and records, and
//! the bench's seeded subjects (`credgate seed`).

use serde_json::{Map, Value, json};

use super::CliError;
use crate::config::Config;
use crate::ids::{CreditCode, SubjectId};
use crate::store::{NewRecord, Store};

/// Sample subjects and records for the quickstart and the tests.
pub fn sample_records() -> Vec<NewRecord> {
    let lp = |id: &str| SubjectId::parse("legal_person", id).expect("sample code");
    let np = |id: &str| SubjectId::parse("natural_person", id).expect("sample id");
    let rec = |subject: SubjectId, item: &str, provider: &str, data: Value| NewRecord {
        subject,
        item: item.into(),
        provider: provider.into(),
        data: match data {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        // Sample data: negative records use the catalog's default tier and
        // decision-date field.
        terms: None,
    };
    let market = "113703000043000010";
    let tax = "113703000043000023";
    let ceramics = lp("91370300MA3CXQ001R");
    let chem = lp("91370300MA3DFR002A");
    let person = np("370303198503150015");
    vec![
        rec(
            ceramics.clone(),
            "registration",
            market,
            json!({
            "enterprise_name": "淄博鲁瓷陶瓷有限公司", "legal_representative": "王建国",
            "registered_capital": 2000, "establishment_date": "2016-03-18",
            "registered_address": "山东省淄博市张店区华光路88号", "business_scope": "日用陶瓷制造、销售",
            "business_status": "存续"}),
        ),
        rec(
            ceramics.clone(),
            "admin_licence",
            market,
            json!({
            "licence_no": "SC12337030300123", "licence_name": "食品相关产品生产许可",
            "licence_authority": "淄博市市场监督管理局", "licence_valid_until": "2028-06-30"}),
        ),
        rec(
            ceramics.clone(),
            "admin_penalty",
            market,
            json!({
            "penalty_decision_no": "淄市监罚〔2026〕15号", "penalty_reason": "产品标识不符合规定",
            "penalty_content": "罚款人民币5000元", "penalty_authority": "淄博市市场监督管理局",
            "penalty_date": "2026-05-12"}),
        ),
        rec(
            ceramics.clone(),
            "enterprise_tax",
            tax,
            json!({
            "tax_paid_annual": 1_286_000, "tax_credit_rating": "A"}),
        ),
        rec(
            ceramics,
            "enterprise_social_insurance",
            tax,
            json!({
            "insured_employees": 126, "social_insurance_paid_months": 60}),
        ),
        rec(
            chem.clone(),
            "registration",
            market,
            json!({
            "enterprise_name": "淄博齐鲁新材料科技有限公司", "legal_representative": "李红",
            "registered_capital": 500, "establishment_date": "2019-09-02",
            "registered_address": "山东省淄博市高新区柳泉路12号", "business_scope": "化工新材料研发",
            "business_status": "存续"}),
        ),
        rec(
            chem.clone(),
            "abnormal_operation",
            market,
            json!({
            "abnormal_reason": "未按规定报送年度报告", "abnormal_listed_date": "2026-07-01",
            "abnormal_authority": "淄博市市场监督管理局"}),
        ),
        rec(
            chem,
            "arrears",
            tax,
            json!({
            "tax_arrears_amount": 38_200, "social_insurance_arrears_amount": 0, "arrears_as_of": "2026-10-31"}),
        ),
        rec(
            person.clone(),
            "person_basic",
            market,
            json!({
            "person_name": "张伟", "birth_date": "1985-03-15", "residence_address": "山东省淄博市张店区共青团路1号"}),
        ),
        rec(
            person.clone(),
            "professional_qualification",
            market,
            json!({
            "qualification_name": "注册会计师", "qualification_cert_no": "370300123456",
            "qualification_issuer": "中国注册会计师协会"}),
        ),
        rec(
            person.clone(),
            "person_income",
            tax,
            json!({"monthly_income": 18_500}),
        ),
        rec(
            person,
            "person_real_estate",
            market,
            json!({"real_estate_count": 1}),
        ),
    ]
}

/// Seed the sample records if the store is empty. Quickstart only: this is
/// development data and bypasses the submission endpoint deliberately.
pub async fn seed(store: &Store) -> Result<usize, CliError> {
    if store
        .record_count()
        .await
        .map_err(|e| CliError(e.to_string()))?
        > 0
    {
        return Ok(0);
    }
    let recs = sample_records();
    store
        .insert_seed_records(&recs, "quickstart-seed", &crate::audit::now_rfc3339())
        .await
        .map_err(|e| CliError(e.to_string()))?;
    Ok(recs.len())
}

/// The `n`-th synthetic legal-person code (valid GB 32100).
pub fn synthetic_code(n: u32) -> CreditCode {
    const CS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut tail = [b'0'; 7];
    let mut x = n;
    for c in tail.iter_mut().rev() {
        *c = CS[(x % 31) as usize];
        x /= 31;
    }
    let prefix = format!("91370300MB{}", String::from_utf8_lossy(&tail));
    let check = CreditCode::check_char(&prefix).expect("prefix of the GB 32100 alphabet");
    CreditCode::parse(&format!("{prefix}{check}")).expect("valid synthetic code")
}

/// `credgate seed`: synthetic subjects in batches of 1,000 records.
pub async fn seed_synthetic(cfg: &Config, subjects: u32) -> Result<u32, CliError> {
    let store = Store::connect_config(cfg)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let now = crate::audit::now_rfc3339();
    // Penalties decided a month ago: inside every tier's disclosure period.
    let recent = crate::policy::lifecycle::format_date(
        time::OffsetDateTime::now_utc().date() - time::Duration::days(30),
    );
    let mut batch = Vec::with_capacity(1000);
    for n in 0..subjects {
        let subject = SubjectId::Legal(synthetic_code(n));
        let obj = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        batch.push(NewRecord {
            subject: subject.clone(),
            item: "registration".into(),
            provider: "113703000043000010".into(),
            terms: None,
            data: obj(
                json!({"enterprise_name": format!("淄博合成测试企业{n}有限公司"),
                "legal_representative": "测试", "registered_capital": 100 + n % 900,
                "establishment_date": "2015-01-01", "business_status": "存续"}),
            ),
        });
        if n % 3 == 0 {
            batch.push(NewRecord {
                subject,
                item: "admin_penalty".into(),
                provider: "113703000043000010".into(),
                data: obj(
                    json!({"penalty_decision_no": format!("淄市监罚〔2026〕{n}号"),
                    "penalty_content": "警告", "penalty_date": recent}),
                ),
                terms: None,
            });
        }
        if batch.len() >= 1000 {
            store
                .insert_seed_records(&batch, "seed", &now)
                .await
                .map_err(|e| CliError(e.to_string()))?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store
            .insert_seed_records(&batch, "seed", &now)
            .await
            .map_err(|e| CliError(e.to_string()))?;
    }
    store.close().await;
    Ok(subjects)
}
