//! The policy file: roles and groups with their permissions and models, plus sections that
//! belong to the service (a service reads its own keys, such as usage limits, from the same file).
//!
//! ```toml
//! service_role = "service"          # the role given to a bare service key
//!
//! [roles.admin]
//! permissions = ["*"]               # every permission the service defines
//!
//! [roles.user]
//! permissions = ["chat", "models"]
//! models = ["gpt-4o-mini", "mock-*"] # optional allow-list, `*` and `?` wildcards; absent = all
//!
//! [groups."research"]               # an Open WebUI group, by id or by name
//! permissions = ["reports:read"]    # optional; added to the role's
//! models = ["gpt-4o"]               # optional; added to the role's (absent: adds none)
//!
//! [users."<user id>"]               # per-user sections: only the service's own keys
//! ```
//! Every problem is a [`PolicyError`] naming the file, the line and the reason: an unknown
//! permission, an unknown key, a key in a table where the service does not read it.

use crate::error::PolicyError;
use crate::policy::{Grant, Permission, Policy};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The kinds of table a policy file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `[roles.<name>]`
    Role,
    /// `[groups."<id or name>"]`
    Group,
    /// `[users."<user id>"]`
    User,
}

impl Table {
    fn section(self) -> &'static str {
        match self {
            Self::Role => "roles",
            Self::Group => "groups",
            Self::User => "users",
        }
    }
}

/// What a service lets its policy file say: its permission names, and the keys of its own it
/// reads from role, group and user tables.
#[derive(Debug, Clone, Copy)]
pub struct Vocabulary<'a> {
    /// Every permission the service defines (`*` grants all of them).
    pub permissions: &'a [Permission],
    /// `(key, tables it may appear in)`, e.g. `("limits", &[Table::Role, Table::User])`.
    pub keys: &'a [(&'a str, &'a [Table])],
}

/// A key of the service's own, as written in one table.
#[derive(Debug, Clone)]
pub struct Section<'t> {
    /// The table it is in.
    pub table: Table,
    /// The role name, group key or user id.
    pub name: String,
    /// The key.
    pub key: String,
    value: Spanned<DeValue<'t>>,
}

/// A parsed, validated policy file: the [`Policy`] and the service's own sections.
#[derive(Debug, Clone)]
pub struct PolicyDocument<'t> {
    text: &'t str,
    file: String,
    policy: Policy,
    sections: Vec<Section<'t>>,
}

impl<'t> PolicyDocument<'t> {
    /// Parses `text`; `file` names it in errors.
    pub fn parse(
        text: &'t str,
        file: &str,
        vocabulary: &Vocabulary<'_>,
    ) -> Result<Self, PolicyError> {
        let mut reader = Reader {
            text,
            file,
            vocabulary,
            sections: Vec::new(),
        };
        let root = DeTable::parse(text).map_err(|error| reader.toml_error(&error))?;
        let policy = reader.policy(root)?;
        Ok(Self {
            text,
            file: file.to_owned(),
            policy,
            sections: reader.sections,
        })
    }

    /// The access policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The service's own sections, in file order.
    pub fn sections(&self) -> &[Section<'t>] {
        &self.sections
    }

    /// The sections with `key`.
    pub fn sections_named<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Section<'t>> {
        self.sections
            .iter()
            .filter(move |section| section.key == key)
    }

    /// Reads a section as `T`; a value `T` does not accept is an error at its line.
    pub fn read<T: DeserializeOwned>(&self, section: &Section<'t>) -> Result<T, PolicyError> {
        T::deserialize(ValueDeserializer::from(section.value.clone()))
            .map_err(|error| self.toml_error(&error, section.value.span().start))
    }

    /// An error at `offset` (a byte offset in the file, as serde's `Spanned` gives it).
    pub fn error_at(&self, offset: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.clone(),
            line: line_of(self.text, offset),
            reason: reason.into(),
        }
    }

    /// Where `section` starts, for errors about the section as a whole.
    pub fn offset_of(section: &Section<'t>) -> usize {
        section.value.span().start
    }

    fn toml_error(&self, error: &toml::de::Error, fallback: usize) -> PolicyError {
        let offset = error.span().map_or(fallback, |span| span.start);
        self.error_at(offset, error.message().trim().to_owned())
    }
}

/// Reads a policy file with no sections of the service's own.
impl Policy {
    /// Reads and validates the policy at `path` against `permissions`.
    pub fn load(path: &Path, permissions: &[Permission]) -> Result<Self, PolicyError> {
        Self::parse(&read_file(path)?, &path.display().to_string(), permissions)
    }

    /// Validates policy `text` (named `file` in errors) against `permissions`.
    pub fn parse(text: &str, file: &str, permissions: &[Permission]) -> Result<Self, PolicyError> {
        let vocabulary = Vocabulary {
            permissions,
            keys: &[],
        };
        PolicyDocument::parse(text, file, &vocabulary).map(|document| document.policy)
    }
}

/// The text of a policy file, or an error saying why it cannot be read.
pub fn read_file(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|error| PolicyError {
        file: path.display().to_string(),
        line: 0,
        reason: format!("cannot read the policy: {error}"),
    })
}

/// The parse in progress.
struct Reader<'t, 'v> {
    text: &'t str,
    file: &'v str,
    vocabulary: &'v Vocabulary<'v>,
    sections: Vec<Section<'t>>,
}

type Entry<'t> = (Spanned<std::borrow::Cow<'t, str>>, Spanned<DeValue<'t>>);

impl<'t> Reader<'t, '_> {
    fn error_at(&self, offset: usize, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            file: self.file.to_owned(),
            line: line_of(self.text, offset),
            reason: reason.into(),
        }
    }

    fn toml_error(&self, error: &toml::de::Error) -> PolicyError {
        let offset = error.span().map_or(0, |span| span.start);
        self.error_at(offset, error.message().trim().to_owned())
    }

    fn read<T: DeserializeOwned>(&self, value: Spanned<DeValue<'t>>) -> Result<T, PolicyError> {
        let start = value.span().start;
        T::deserialize(ValueDeserializer::from(value)).map_err(|error| {
            let offset = error.span().map_or(start, |span| span.start);
            self.error_at(offset, error.message().trim().to_owned())
        })
    }

    fn policy(&mut self, root: Spanned<DeTable<'t>>) -> Result<Policy, PolicyError> {
        let mut service_role: Option<Spanned<String>> = None;
        let mut roles = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for (key, value) in root.into_inner() {
            match key.get_ref().as_ref() {
                "service_role" => service_role = Some(self.read(value)?),
                "roles" => roles = self.grants(Table::Role, value)?,
                "groups" => groups = self.grants(Table::Group, value)?,
                "users" => self.users(value)?,
                other => {
                    return Err(self.error_at(
                        key.span().start,
                        format!("unknown key `{other}`; known: service_role, roles, groups, users"),
                    ));
                }
            }
        }
        let service_role = service_role.ok_or_else(|| {
            self.error_at(
                0,
                "`service_role` is missing: name the role a bare service key acts as",
            )
        })?;
        if !roles.contains_key(service_role.get_ref()) {
            return Err(self.error_at(
                service_role.span().start,
                format!(
                    "service_role `{0}` has no [roles.{0}] table",
                    service_role.get_ref()
                ),
            ));
        }
        Ok(Policy::new(roles, service_role.into_inner()).with_groups(groups))
    }

    /// `[roles.*]` or `[groups.*]`.
    fn grants(
        &mut self,
        table: Table,
        value: Spanned<DeValue<'t>>,
    ) -> Result<BTreeMap<String, Grant>, PolicyError> {
        let mut grants = BTreeMap::new();
        for (name, body) in self.table_entries(table.section(), value)? {
            if name.get_ref().trim().is_empty() {
                return Err(self.error_at(
                    name.span().start,
                    format!("an empty {} name", table.section()),
                ));
            }
            if table == Table::Group
                && let Some(twin) = grants
                    .keys()
                    .find(|key: &&String| key.trim().eq_ignore_ascii_case(name.get_ref().trim()))
            {
                // Open WebUI matches names exactly; two keys one typo apart would split a team
                // in two, each half with its own grants and its own budget.
                return Err(self.error_at(
                    name.span().start,
                    format!(
                        "groups `{twin}` and `{}` differ only in case or spaces: keep one",
                        name.get_ref()
                    ),
                ));
            }
            let grant = self.grant(table, name.get_ref(), body)?;
            grants.insert(name.into_inner().into_owned(), grant);
        }
        Ok(grants)
    }

    fn grant(
        &mut self,
        table: Table,
        name: &str,
        body: Spanned<DeValue<'t>>,
    ) -> Result<Grant, PolicyError> {
        let mut grant = Grant::default();
        let mut has_permissions = false;
        let start = body.span().start;
        for (key, value) in self.table_entries(name, body)? {
            match key.get_ref().as_ref() {
                "permissions" => {
                    has_permissions = true;
                    grant.permissions = self.permissions(self.read(value)?)?;
                }
                "models" => {
                    let patterns: Vec<String> = self.read(value)?;
                    grant.models = Some(patterns);
                }
                _ => self.section(table, name, key, value)?,
            }
        }
        if table == Table::Role && !has_permissions {
            return Err(self.error_at(
                start,
                format!("role `{name}` has no `permissions` (write `permissions = []` for none)"),
            ));
        }
        Ok(grant)
    }

    fn users(&mut self, value: Spanned<DeValue<'t>>) -> Result<(), PolicyError> {
        for (user, body) in self.table_entries("users", value)? {
            for (key, value) in self.table_entries(user.get_ref(), body)? {
                self.section(Table::User, user.get_ref(), key, value)?;
            }
        }
        Ok(())
    }

    /// A key of the service's own, if its vocabulary has it for this table.
    fn section(
        &mut self,
        table: Table,
        name: &str,
        key: Spanned<std::borrow::Cow<'t, str>>,
        value: Spanned<DeValue<'t>>,
    ) -> Result<(), PolicyError> {
        let allowed = self
            .vocabulary
            .keys
            .iter()
            .any(|(known, tables)| *known == key.get_ref().as_ref() && tables.contains(&table));
        if !allowed {
            let mut known: Vec<&str> = match table {
                Table::User => Vec::new(),
                _ => vec!["permissions", "models"],
            };
            known.extend(
                self.vocabulary
                    .keys
                    .iter()
                    .filter(|(_, tables)| tables.contains(&table))
                    .map(|(known, _)| *known),
            );
            return Err(self.error_at(
                key.span().start,
                format!(
                    "unknown key `{}` in [{}.{name}]; known: {}",
                    key.get_ref(),
                    table.section(),
                    known.join(", ")
                ),
            ));
        }
        self.sections.push(Section {
            table,
            name: name.to_owned(),
            key: key.into_inner().into_owned(),
            value,
        });
        Ok(())
    }

    fn table_entries(
        &self,
        what: &str,
        value: Spanned<DeValue<'t>>,
    ) -> Result<Vec<Entry<'t>>, PolicyError> {
        let start = value.span().start;
        match value.into_inner() {
            DeValue::Table(table) => Ok(table.into_iter().collect()),
            other => Err(self.error_at(
                start,
                format!("`{what}` must be a table, not a {}", other.type_str()),
            )),
        }
    }

    fn permissions(
        &self,
        names: Vec<Spanned<String>>,
    ) -> Result<std::collections::BTreeSet<Permission>, PolicyError> {
        let known = self.vocabulary.permissions;
        let mut granted = std::collections::BTreeSet::new();
        for name in names {
            if name.get_ref() == "*" {
                granted.extend(known.iter().cloned());
                continue;
            }
            let permission = known
                .iter()
                .find(|permission| permission.as_str() == name.get_ref())
                .ok_or_else(|| {
                    let names: Vec<&str> = known.iter().map(Permission::as_str).collect();
                    self.error_at(
                        name.span().start,
                        format!(
                            "unknown permission `{}`; known: *, {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    )
                })?;
            granted.insert(permission.clone());
        }
        Ok(granted)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| {
        before.bytes().filter(|b| *b == b'\n').count() + 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AuthMethod, Group, Identity};
    use serde::Deserialize;

    const CHAT: Permission = Permission::new("chat");
    const MODELS: Permission = Permission::new("models");
    const ALL: [Permission; 2] = [CHAT, MODELS];
    const VOCABULARY: Vocabulary<'static> = Vocabulary {
        permissions: &ALL,
        keys: &[
            ("quota", &[Table::Role, Table::Group, Table::User]),
            ("budget", &[Table::Group]),
        ],
    };

    fn parse(text: &str) -> Result<PolicyDocument<'_>, PolicyError> {
        PolicyDocument::parse(text, "rbac.toml", &VOCABULARY)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Quota {
        per_minute: Spanned<u32>,
    }

    #[test]
    fn roles_groups_and_the_services_own_sections() {
        let text = r#"
service_role = "svc"
[roles.svc]
permissions = ["chat"]
[roles.admin]
permissions = ["*"]
[roles.admin.quota]
per_minute = 5
[groups."research"]
models = ["big-*"]
[groups."research".budget]
per_minute = 1
[users."u-7".quota]
per_minute = 9
"#;
        let document = parse(text).unwrap();
        let policy = document.policy();
        let admin = Identity::new("a", Some("admin".into()), AuthMethod::Session);
        assert!(policy.allows(&admin, &MODELS));
        let mut member = Identity::new("m", Some("svc".into()), AuthMethod::Session);
        member.groups = vec![Group {
            id: "g1".into(),
            name: "research".into(),
        }];
        assert!(policy.allows_model(&member, "big-1"));
        let quotas: Vec<(Table, &str, u32)> = document
            .sections_named("quota")
            .map(|section| {
                let quota: Quota = document.read(section).unwrap();
                (
                    section.table,
                    section.name.as_str(),
                    *quota.per_minute.get_ref(),
                )
            })
            .collect();
        assert_eq!(quotas, [(Table::Role, "admin", 5), (Table::User, "u-7", 9)]);
        let budget = document.sections_named("budget").next().unwrap();
        assert_eq!(
            (budget.table, budget.name.as_str()),
            (Table::Group, "research")
        );
    }

    /// The first problem of `text`: parsing it, or reading its `quota` sections.
    fn problem(text: &str) -> PolicyError {
        let document = match parse(text) {
            Ok(document) => document,
            Err(error) => return error,
        };
        document
            .sections_named("quota")
            .find_map(|section| document.read::<Quota>(section).err())
            .expect("the text has a problem")
    }

    #[test]
    fn every_problem_names_its_line() {
        let head = "service_role = \"svc\"\n[roles.svc]\npermissions = []\n";
        for (body, line, words) in [
            (
                "permisions = [\"chat\"]\n",
                4,
                "unknown key `permisions` in [roles.svc]",
            ),
            (
                "[roles.x]\nmodels = []\n",
                4,
                "role `x` has no `permissions`",
            ),
            (
                "[roles.x]\npermissions = [\"chat\", \"chats\"]\n",
                5,
                "unknown permission `chats`; known: *, chat, models",
            ),
            (
                "[roles.svc.budget]\nper_minute = 1\n",
                4,
                "unknown key `budget` in [roles.svc]",
            ),
            ("[users.\"u\"]\nmodels = []\n", 5, "known: quota"),
            ("[roles.svc.quota]\nper_minute = -1\n", 5, "invalid value"),
            ("[roles.svc.quota]\nper_mnute = 1\n", 5, "per_mnute"),
            ("[groups.\" \"]\n", 4, "an empty groups name"),
            (
                "[groups.\"Research\"]\n[groups.\"research \"]\n",
                5,
                "differ only in case or spaces",
            ),
            ("colour = 1\n", 4, "unknown key `colour`"),
            ("[roles.svc\n", 4, ""),
        ] {
            let error = problem(&format!("{head}{body}"));
            assert_eq!(error.line, line, "{body}: {error}");
            assert!(error.reason.contains(words), "{body}: {error}");
        }
    }

    #[test]
    fn the_service_role_must_exist() {
        let error = parse("service_role = \"robot\"\n").unwrap_err();
        assert!(error.reason.contains("[roles.robot]"), "{error}");
        let error = parse("[roles.x]\npermissions = []\n").unwrap_err();
        assert!(error.reason.contains("service_role"), "{error}");
        let error = Policy::load(Path::new("/nonexistent/rbac.toml"), &ALL).unwrap_err();
        assert!(error.reason.contains("cannot read"), "{error}");
    }
}
