package console

import (
	"github.com/gofiber/fiber/v2"

	"cartera/wallet"
)

const deviceLogLines = 50

// walletPage reads the wallet's counters (a few keys) and the latest
// device log lines: no pass is read.
func (c *Console) walletPage(ctx *fiber.Ctx) error {
	data := map[string]any{"LogLines": deviceLogLines}
	if c.o.Wallet == nil {
		data["Off"] = true
		return c.render(ctx, fiber.StatusOK, "wallet", "Wallet", "wallet", data)
	}
	st, err := c.o.Wallet.Stats()
	if err != nil {
		return err
	}
	lines, err := c.o.Wallet.DeviceLog(deviceLogLines)
	if err != nil {
		return err
	}
	if !c.session(ctx).role.Can(RoleMarketer) {
		for i := range lines {
			lines[i].Line = emailIn.ReplaceAllStringFunc(lines[i].Line, MaskEmail)
		}
	}
	var live, voided int64
	for _, p := range st.Passes {
		live, voided = live+p.Live, voided+p.Voided
	}
	pushes := map[string]int64{}
	for _, p := range st.Pushes {
		pushes[p.Platform+" "+p.Outcome] = p.N
	}
	data["S"], data["Live"], data["Voided"], data["Issued"], data["Log"] = st, live, voided, live+voided, lines
	data["APNsSent"], data["APNsFailed"] = pushes["apns "+wallet.PushSent], pushes["apns "+wallet.PushFailed]+pushes["apns "+wallet.PushRefused]
	return c.render(ctx, fiber.StatusOK, "wallet", "Wallet", "wallet", data)
}
