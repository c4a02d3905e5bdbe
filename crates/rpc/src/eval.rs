//! Evaluating decoded expressions: awaiting the promises they name, following property paths,
//! calling methods and running `map` instructions.

use crate::stub::RpcResult;
use crate::value::{RpcError, RpcValue};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use std::sync::Arc;

/// A result that may not have settled yet, shared by everything that refers to it.
pub(crate) type SharedResult = Shared<BoxFuture<'static, RpcResult>>;

/// What a reference starts from.
#[derive(Clone)]
pub(crate) enum Base {
    /// The result of a push, settled or not.
    Promise(SharedResult),
    /// A known value (an exported stub, a captured stub, a settled push).
    Value(RpcValue),
    /// A push that failed.
    Failed(RpcError),
    /// Inside a `map`: 0 is the element, -k the k-th capture, +k the k-th instruction's result.
    Slot(i64),
}

/// A decoded expression.
pub(crate) enum Expr {
    Lit(RpcValue),
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    /// `["pipeline"|"import", id, path, args?]`: a property read, or a call when `args` is set.
    Ref {
        base: Base,
        path: Vec<String>,
        args: Option<Vec<Expr>>,
    },
    /// A promise the peer will settle.
    Promise(SharedResult),
    /// `["remap", id, path, captures, instructions]`: `.map()` on a remote value.
    Remap {
        base: Base,
        path: Vec<String>,
        captures: Vec<Base>,
        instructions: Arc<[Expr]>,
    },
}

impl Expr {
    /// The value of a literal expression (anything else is `undefined`; callers check first).
    pub(crate) fn into_literal(self) -> RpcValue {
        match self {
            Expr::Lit(v) => v,
            _ => RpcValue::Undefined,
        }
    }
}

/// The slots a `map` instruction can name.
pub(crate) struct MapEnv {
    input: RpcValue,
    captures: Vec<RpcValue>,
    results: Vec<RpcValue>,
}

impl MapEnv {
    fn slot(&self, i: i64) -> Result<RpcValue, RpcError> {
        let found = match i {
            0 => Some(&self.input),
            i if i < 0 => self.captures.get((-i - 1) as usize),
            i => self.results.get((i - 1) as usize),
        };
        found.cloned().ok_or_else(|| {
            RpcError::error(format!("map instruction names slot {i}, which is not set"))
        })
    }
}

pub(crate) async fn resolve_base(base: &Base, env: Option<&MapEnv>) -> RpcResult {
    match base {
        Base::Promise(p) => p.clone().await,
        Base::Value(v) => Ok(v.clone()),
        Base::Failed(e) => Err(e.clone()),
        Base::Slot(i) => match env {
            Some(env) => env.slot(*i),
            None => Err(RpcError::error("a slot reference outside a map")),
        },
    }
}

/// Evaluates an expression to a value, awaiting every promise inside it.
pub(crate) fn eval<'a>(e: &'a Expr, env: Option<&'a MapEnv>) -> BoxFuture<'a, RpcResult> {
    Box::pin(async move {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Array(items) => Ok(RpcValue::Array(eval_all(items, env).await?)),
            Expr::Object(fields) => {
                let values = join_all(fields.iter().map(|(_, e)| eval(e, env))).await;
                let mut out = Vec::with_capacity(fields.len());
                for ((k, _), v) in fields.iter().zip(values) {
                    out.push((k.clone(), v?));
                }
                Ok(RpcValue::Object(out))
            }
            Expr::Ref { base, path, args } => {
                let target = resolve_base(base, env).await?;
                let args = match args {
                    Some(a) => Some(eval_all(a, env).await?),
                    None => None,
                };
                apply(target, path.clone(), args).await
            }
            Expr::Promise(p) => p.clone().await,
            Expr::Remap {
                base,
                path,
                captures,
                instructions,
            } => {
                let target = resolve_base(base, env).await?;
                let subject = apply(target, path.clone(), None).await?;
                let mut caps = Vec::with_capacity(captures.len());
                for c in captures {
                    caps.push(resolve_base(c, env).await?);
                }
                remap(subject, caps, instructions.clone()).await
            }
        }
    })
}

pub(crate) async fn eval_all(
    items: &[Expr],
    env: Option<&MapEnv>,
) -> Result<Vec<RpcValue>, RpcError> {
    join_all(items.iter().map(|e| eval(e, env)))
        .await
        .into_iter()
        .collect()
}

/// `.map()`: an array maps element by element, `null`/`undefined` stay as they are, and any
/// other value is mapped once.
async fn remap(subject: RpcValue, captures: Vec<RpcValue>, instructions: Arc<[Expr]>) -> RpcResult {
    match subject {
        RpcValue::Array(items) => {
            let runs = items
                .into_iter()
                .map(|input| run_mapper(input, captures.clone(), &instructions));
            Ok(RpcValue::Array(
                join_all(runs).await.into_iter().collect::<Result<_, _>>()?,
            ))
        }
        v if v.is_nullish() => Ok(v),
        v => run_mapper(v, captures, &instructions).await,
    }
}

async fn run_mapper(input: RpcValue, captures: Vec<RpcValue>, instructions: &[Expr]) -> RpcResult {
    let mut env = MapEnv {
        input,
        captures,
        results: Vec::with_capacity(instructions.len()),
    };
    for i in instructions {
        let v = eval(i, Some(&env)).await?;
        env.results.push(v);
    }
    Ok(env.results.pop().unwrap_or(RpcValue::Undefined))
}

/// Follows `path` from `value`, then calls the result when `args` is set. A stub met along the
/// way gets the rest of the path (and the call).
pub(crate) fn apply(
    value: RpcValue,
    path: Vec<String>,
    args: Option<Vec<RpcValue>>,
) -> BoxFuture<'static, RpcResult> {
    Box::pin(async move {
        let mut cur = value;
        for i in 0..path.len() {
            let key = &path[i];
            cur = match cur {
                RpcValue::Stub(s) => {
                    let mut rest = path;
                    rest.drain(..i);
                    return match args {
                        Some(a) => s.0.call(rest, a).await,
                        None => s.0.get(rest).await,
                    };
                }
                RpcValue::Object(fields) => fields
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map_or(RpcValue::Undefined, |(_, v)| v),
                RpcValue::Array(items) => key
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| items.into_iter().nth(n))
                    .unwrap_or(RpcValue::Undefined),
                RpcValue::Null | RpcValue::Undefined => {
                    return Err(RpcError::type_error(format!(
                        "cannot read '{key}' of {}",
                        if matches!(cur, RpcValue::Null) {
                            "null"
                        } else {
                            "undefined"
                        }
                    )));
                }
                _ => RpcValue::Undefined,
            };
        }
        match args {
            None => Ok(cur),
            Some(a) => match cur {
                RpcValue::Stub(s) => s.0.call(Vec::new(), a).await,
                _ => Err(RpcError::not_a_function(&path.join("."))),
            },
        }
    })
}

/// Polls a future once: `Some` if it finished, `None` if it is waiting (and will be polled
/// again by whoever awaits it next).
pub(crate) async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match f.poll_unpin(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}
