//! The built-in `salesforce` integration end to end against its provider's fake (Salesforce).
