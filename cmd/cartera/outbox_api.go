package main

// The outbox API: list, retry and drop messages.

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"cartera/channels"
)

func (a *api) outbox() (*channels.Outbox, error) {
	if a.core == nil || a.core.delivery == nil {
		return nil, &httpError{fiber.StatusNotFound, "delivery is off"}
	}
	return a.core.delivery.outbox, nil
}

func (a *api) listOutbox(c *fiber.Ctx) error {
	ob, err := a.outbox()
	if err != nil {
		return err
	}
	state := c.Query("state", channels.StateQueued)
	if state != channels.StateQueued && state != channels.StateDead {
		return &httpError{fiber.StatusBadRequest, fmt.Sprintf("state: want queued or dead, got %q", state)}
	}
	msgs, err := ob.List(state, maxPage)
	if err != nil {
		return err
	}
	if msgs == nil {
		msgs = []*channels.Message{}
	}
	return c.JSON(fiber.Map{"state": state, "messages": msgs})
}

func seqParam(c *fiber.Ctx) (uint64, error) {
	seq, err := strconv.ParseUint(c.Params("seq"), 10, 64)
	if err != nil {
		return 0, &httpError{fiber.StatusBadRequest, fmt.Sprintf("seq: want a message number, got %q", c.Params("seq"))}
	}
	return seq, nil
}

func (a *api) retryOutbox(c *fiber.Ctx) error {
	return a.outboxOp(c, (*channels.Outbox).Retry, "no dead message with that number")
}

func (a *api) dropOutbox(c *fiber.Ctx) error {
	return a.outboxOp(c, (*channels.Outbox).Drop, "no message with that number")
}

// outboxOp runs an admin operation on one message by its number.
func (a *api) outboxOp(c *fiber.Ctx, op func(*channels.Outbox, uint64) error, notFound string) error {
	ob, err := a.outbox()
	if err != nil {
		return err
	}
	seq, err := seqParam(c)
	if err != nil {
		return err
	}
	if err := op(ob, seq); errors.Is(err, channels.ErrNotFound) {
		return &httpError{fiber.StatusNotFound, notFound}
	} else if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"success": true})
}
