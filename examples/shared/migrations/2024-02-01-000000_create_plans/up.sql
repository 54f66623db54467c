-- Subscription plans: one list for every tenant. The table has no
-- tenant_id column, so tenantctl leaves it shared and gives tenant roles
-- SELECT on it only.
CREATE TABLE plans (
    code text PRIMARY KEY,
    name text NOT NULL,
    monthly_price_cents integer NOT NULL CHECK (monthly_price_cents >= 0)
);

INSERT INTO plans (code, name, monthly_price_cents) VALUES
    ('free', 'Free', 0),
    ('team', 'Team', 2900);
