//! A tenant's profile (its `config`: enabled modules, module settings, theme, contacts) and the
//! template it was built from: the three-way merge that carries a template's changes into
//! tenants without losing their own edits ([`merge`]).

pub mod merge;
pub mod upgrade;
