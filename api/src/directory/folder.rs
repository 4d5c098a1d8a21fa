//! Tenants and Routes as YAML files in the folder the standalone proxy watches.

/// The manifest-folder directory.
pub struct FolderDirectory;
