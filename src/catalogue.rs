//! The purchase catalogue: what can be ordered, how it is said, and what it
//! costs, in one file the user owns (`[purchases] catalogue = "…"`).
//!
//! Exists so that one list is the source of both halves of an order: the
//! intents' `purchase_product` list (what "order …" can match, handed to
//! [`IntentSet::build`](crate::intent::IntentSet::build) as an extra list,
//! which takes precedence over the files' own) and the gate's unit prices
//! (the read-back's "That's 9.98 USD." and the spend cap). It is read and
//! checked once, when the config loads: a bad price, a duplicate name or a
//! spoken form two items share is a config error naming the file and the
//! item.
//!
//! Without a configured file the shipped example (`catalogue.toml` at the
//! repository's root, compiled in) is used for its names and synonyms only:
//! its prices are examples, and a made-up price must never be read back or
//! counted against a spend cap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::gate::Money;
use crate::intent::ListDef;
use crate::intent::load::{ListValue, Origin};
use crate::intent::normalize::normalize_fragment;
use crate::intent::template::{self, Expr};

/// The list the catalogue fills: OrderItem's `{purchase_product:item}`.
pub const PRODUCT_LIST: &str = "purchase_product";

/// The shipped example catalogue, used when none is configured.
const EXAMPLE: &str = include_str!("../catalogue.toml");

/// How many spoken forms of one synonym are compared for duplicates (a
/// template with many optional parts is checked on its first forms).
const FORMS_CHECKED: usize = 256;

/// A catalogue that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The file could not be read.
    #[error("cannot read catalogue {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("invalid catalogue {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// One item is wrong.
    #[error("invalid catalogue {path}: item {item:?}: {message}")]
    Item {
        /// The file.
        path: PathBuf,
        /// The item's name (or its position, for an unnamed one).
        item: String,
        /// What is wrong.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCatalogue {
    #[serde(default)]
    item: Vec<FileItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileItem {
    name: String,
    #[serde(default)]
    synonyms: Vec<String>,
    price: Option<String>,
}

/// One product.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What is ordered (the `item` slot's value).
    pub name: String,
    /// Every way to say it: the name and the synonyms, parsed.
    spoken: Vec<Expr>,
    /// The synonyms as written.
    pub synonyms: Vec<String>,
    /// Its unit price, if known.
    pub price: Option<Money>,
}

/// A checked catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// The file it came from (`None`: the shipped example).
    pub path: Option<PathBuf>,
    /// The items, in the file's order.
    pub items: Vec<Item>,
}

impl Catalogue {
    /// Reads and checks a catalogue file. Prices without a currency are in
    /// `currency`.
    pub fn load(path: &Path, currency: &str) -> Result<Catalogue, CatalogueError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Catalogue::parse(&text, path, currency)
    }

    /// The shipped example, without its prices (see the module docs).
    pub fn example() -> Result<Catalogue, CatalogueError> {
        let mut catalogue = Catalogue::parse(EXAMPLE, Path::new("catalogue.toml"), "USD")?;
        catalogue.path = None;
        for item in &mut catalogue.items {
            item.price = None;
        }
        Ok(catalogue)
    }

    /// Checks a catalogue's text; `path` is named in errors.
    pub fn parse(text: &str, path: &Path, currency: &str) -> Result<Catalogue, CatalogueError> {
        let file: FileCatalogue = toml::from_str(text).map_err(|e| CatalogueError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut items: Vec<Item> = Vec::with_capacity(file.item.len());
        // Every spoken form (normalised, as the matcher sees it) → its item.
        let mut forms: HashMap<String, String> = HashMap::new();
        for (index, raw) in file.item.into_iter().enumerate() {
            let name = raw.name.trim().to_string();
            let error = |message: String| CatalogueError::Item {
                path: path.to_path_buf(),
                item: if name.is_empty() {
                    format!("#{}", index + 1)
                } else {
                    name.clone()
                },
                message,
            };
            if name.is_empty() {
                return Err(error("the name is empty".into()));
            }
            if let Some(other) = items
                .iter()
                .find(|i| i.name.to_lowercase() == name.to_lowercase())
            {
                return Err(error(format!(
                    "the name is used twice (also {:?})",
                    other.name
                )));
            }
            let price = match &raw.price {
                None => None,
                Some(text) => Some(Money::parse(text, currency).ok_or_else(|| {
                    error(format!("price {text:?} is not an amount like \"4.99 USD\""))
                })?),
            };
            // The name is said as written (no template syntax in names).
            let mut spoken = vec![Expr::Text(name.clone())];
            for synonym in &raw.synonyms {
                let expr = template::parse(synonym)
                    .map_err(|e| error(format!("synonym {synonym:?}: {e}")))?;
                let mut refers = false;
                template::walk_refs(&expr, &mut |_| refers = true);
                if refers {
                    return Err(error(format!(
                        "synonym {synonym:?}: lists and rules ({{...}}, <...>) are not allowed here"
                    )));
                }
                spoken.push(expr);
            }
            let mut own: Vec<String> = Vec::new();
            for expr in &spoken {
                for form in template::sample(expr, FORMS_CHECKED) {
                    let form = normalize_fragment(&form);
                    let form = form.split_whitespace().collect::<Vec<_>>().join(" ");
                    if form.is_empty() {
                        return Err(error("a synonym can be said as nothing at all".into()));
                    }
                    if let Some(other) = forms.get(&form) {
                        return Err(error(format!(
                            "{form:?} is also a way to say {other:?}: no two items may share a spoken form"
                        )));
                    }
                    own.push(form);
                }
            }
            for form in own {
                forms.insert(form, name.clone());
            }
            items.push(Item {
                name,
                spoken,
                synonyms: raw.synonyms,
                price,
            });
        }
        Ok(Catalogue {
            path: Some(path.to_path_buf()),
            items,
        })
    }

    /// The intents' extra lists: [`PRODUCT_LIST`], one value per item,
    /// said as its name or any synonym, valued as its name.
    pub fn lists(&self) -> HashMap<String, ListDef> {
        let values = self
            .items
            .iter()
            .map(|item| ListValue {
                spoken: Expr::Alt(item.spoken.clone()),
                spoken_text: item.name.clone(),
                out: Some(Value::String(item.name.clone())),
                context: Map::new(),
                origin: Origin::default(),
            })
            .collect();
        HashMap::from([(PRODUCT_LIST.to_string(), ListDef::Values(values))])
    }

    /// The known prices, by item name.
    pub fn prices(&self) -> impl Iterator<Item = (&str, &Money)> {
        self.items
            .iter()
            .filter_map(|i| i.price.as_ref().map(|p| (i.name.as_str(), p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(text, Path::new("my-catalogue.toml"), "USD")
    }

    #[test]
    fn the_example_loads_without_its_prices() {
        let example = Catalogue::example().expect("the shipped catalogue is valid");
        assert!(example.items.len() >= 30);
        assert_eq!(example.items[0].name, "AA batteries");
        assert_eq!(example.prices().count(), 0);
        let priced = parse(EXAMPLE).expect("valid");
        assert_eq!(
            priced.items[0].price,
            Some(Money {
                cents: 499,
                currency: "USD".into()
            })
        );
    }

    #[test]
    fn errors_name_the_file_and_the_item() {
        let cases = [
            (
                "[[item]]\nname = \"soap\"\nprice = \"cheap\"\n",
                "item \"soap\": price \"cheap\" is not an amount",
            ),
            (
                "[[item]]\nname = \"soap\"\n[[item]]\nname = \"Soap\"\n",
                "item \"Soap\": the name is used twice",
            ),
            (
                "[[item]]\nname = \"hand soap\"\nsynonyms = [\"soap\"]\n[[item]]\nname = \"dish soap\"\nsynonyms = [\"(soap|dish liquid)\"]\n",
                "item \"dish soap\": \"soap\" is also a way to say \"hand soap\"",
            ),
            (
                "[[item]]\nname = \"tea\"\nsynonyms = [\"{drink}\"]\n",
                "item \"tea\": synonym \"{drink}\": lists and rules",
            ),
            ("[[item]]\nname = \" \"\n", "item \"#1\": the name is empty"),
            (
                "[[item]]\nname = \"tea\"\nsynonyms = [\"[green]\"]\n",
                "said as nothing",
            ),
            ("[[item]]\nnam = \"tea\"\n", "unknown field"),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains("my-catalogue.toml"), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn prices_take_the_default_currency() {
        let c = parse("[[item]]\nname = \"tea\"\nprice = \"2.50\"\n").expect("valid");
        let prices: Vec<_> = c.prices().collect();
        assert_eq!(prices.len(), 1);
        assert_eq!(prices[0].0, "tea");
        assert_eq!(prices[0].1.cents, 250);
        assert_eq!(prices[0].1.currency, "USD");
    }
}
