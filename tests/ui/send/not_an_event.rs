#[derive(serde::Serialize)]
struct Signup {
    user_id: u64,
}

async fn handler(rt: fanfare::Runtime) -> fanfare::Result<()> {
    rt.send(Signup { user_id: 1 }).await?;
    Ok(())
}

fn main() {
    let _ = handler;
}
